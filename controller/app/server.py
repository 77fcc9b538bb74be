"""`edgewise controller serve`: the REST API and the MQTT bridge on one event loop.

Start-up claims the port first, then opens the database, then connects to the broker, and only
then announces the API: each step that fails raises :class:`StartupError`, one line naming the
cause and the setting to change (the CLI prints it without a traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket

import uvicorn

from controller.app.api import create_app
from controller.app.presence import RootTaken
from controller.app.service import Controller
from controller.config import ControllerConfig
from controller.errors import EdgewiseError, StorageError
from controller.storage.open_errors import cannot_open
from edgewise_mqtt.link import BrokerUnreachableError

log = logging.getLogger("edgewise.controller")


class StartupError(EdgewiseError):
    """The controller cannot start; the message names the cause and the setting to change."""


def claim_port(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, before anything announces it; uvicorn serves on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        # create_server re-raises a failed name lookup as an OSError with the resolver's
        # (negative) error number
        if isinstance(exc, socket.gaierror) or (exc.errno is not None and exc.errno < 0):
            reason = f"{host!r} is not a known name or address; set --host or http_host"
        elif exc.errno == errno.EADDRINUSE:
            reason = ("the port is already in use (another controller?); stop that process or "
                      "choose another port with --port or http_port")
        elif exc.errno == errno.EACCES:
            reason = ("permission denied (ports below 1024 need privileges); choose another "
                      "port with --port or http_port")
        elif exc.errno == errno.EADDRNOTAVAIL:
            reason = "not an address of this machine; set --host or http_host"
        else:
            reason = f"{exc.strerror or exc}; check --host/--port (http_host/http_port)"
        raise StartupError(f"cannot listen on {host}:{port}: {reason}") from None


def open_controller(config: ControllerConfig) -> Controller:
    """The controller over its database, or :class:`StartupError` naming the database URL
    (password masked) and why it cannot be opened."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return Controller(config)
    except StorageError as exc:
        if not isinstance(exc.__cause__, SQLAlchemyError):
            raise  # the storage layer's own refusal (a schema behind, ...) says what to do
        raise StartupError(cannot_open(exc, config.database_url)) from None
    except (SQLAlchemyError, ModuleNotFoundError) as exc:
        # ModuleNotFoundError: the URL's driver is not installed (psycopg for postgresql)
        raise StartupError(cannot_open(exc, config.database_url)) from None


async def serve(config: ControllerConfig) -> None:
    listener = claim_port(config.http_host, config.http_port)
    try:
        controller = open_controller(config)
        app = create_app(controller)
        # HTTPS when a certificate is configured (http_tls_cert / http_tls_key)
        tls = config.http_tls_cert is not None
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                               ssl_certfile=config.http_tls_cert,
                                               ssl_keyfile=config.http_tls_key,
                                               # with TLS, an idle keep-alive client (a
                                               # browser, the CLI) otherwise holds SIGTERM up
                                               # for ever
                                               timeout_graceful_shutdown=5))
        try:
            await controller.start()
        except RootTaken:
            controller.db.dispose()
            raise
        except BrokerUnreachableError as exc:
            with contextlib.suppress(Exception):
                await controller.bridge.stop()
            controller.db.dispose()
            raise StartupError(f"{exc}; start the broker or set --broker or [broker] host/port "
                               "in the config") from None
        port = listener.getsockname()[1]
        log.info("controller API on %s://%s:%d", "https" if tls else "http", config.http_host,
                 port)
        try:
            await server.serve(sockets=[listener])  # returns on SIGINT/SIGTERM
        finally:
            await controller.stop()
    finally:
        listener.close()


def run(config: ControllerConfig) -> None:
    asyncio.run(serve(config))
