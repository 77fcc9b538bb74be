"""`edgewise controller serve`: the REST API and the MQTT bridge on one event loop."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from controller.app.api import create_app
from controller.app.service import Controller
from controller.config import ControllerConfig

log = logging.getLogger("edgewise.controller")


async def serve(config: ControllerConfig) -> None:
    controller = Controller(config)
    app = create_app(controller)
    # HTTPS when a certificate is configured (http_tls_cert / http_tls_key)
    tls = config.http_tls_cert is not None
    server = uvicorn.Server(uvicorn.Config(app, host=config.http_host, port=config.http_port,
                                           log_level="warning", lifespan="off",
                                           ssl_certfile=config.http_tls_cert,
                                           ssl_keyfile=config.http_tls_key,
                                           # with TLS, an idle keep-alive client (a browser,
                                           # the CLI) otherwise holds SIGTERM up for ever
                                           timeout_graceful_shutdown=5))
    await controller.start()
    log.info("controller API on %s://%s:%d", "https" if tls else "http", config.http_host,
             config.http_port)
    try:
        await server.serve()  # returns on SIGINT/SIGTERM
    finally:
        await controller.stop()


def run(config: ControllerConfig) -> None:
    asyncio.run(serve(config))
