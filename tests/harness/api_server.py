"""A controller's REST API served by uvicorn on a free port in a thread of the test process, for
tests that call it through the CLI or the real client instead of FastAPI's test client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from controller.app.api import create_app
from controller.app.service import Controller
from simulator.broker import free_port
from tests.harness.waiting import wait_for


@contextmanager
def serving(controller: Controller) -> Iterator[str]:
    """Serve ``controller``'s API until the block ends; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(controller), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, "the API server to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
