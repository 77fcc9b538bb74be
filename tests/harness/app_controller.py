"""A controller in the test's own process, its database filled by a test's ``populate``, and its
real app (``create_app``) behind a ``TestClient``: what the view tests' fixtures share
(tests/harness/web_fleet.py, tests/harness/drift_fleet.py). The MQTT bridge is not started."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from controller.app.api import create_app
from controller.app.service import Controller
from controller.config import ControllerConfig

# a module-scoped fixture's params: each test of the module runs on both databases
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def make_controller(tmp: Path, db_url: str | None = None, **config: Any) -> Controller:
    return Controller(ControllerConfig(data_dir=tmp, db_url=db_url, **config))


def database_url(request: pytest.FixtureRequest) -> str | None:
    """The PostgreSQL database of the module for the ``postgres`` param, else None (SQLite)."""
    url: str | None = (request.getfixturevalue("pg_module_url")
                       if request.param == "postgres" else None)
    return url


@contextlib.contextmanager
def populated_app(tmp: Path, populate: Callable[[Controller, float], None],
                  db_url: str | None = None) -> Iterator[tuple[Controller, TestClient, float]]:
    """(controller, client, now) after ``populate(controller, now)``; the database is let go
    after the client has stopped."""
    c = make_controller(tmp, db_url)
    now = time.time()
    populate(c, now)
    with TestClient(create_app(c)) as client:
        yield c, client, now
    c.db.dispose()
