"""Shared fixtures: a real Mosquitto on a free port, started once per session.

Tests that need to kill or restart the broker use ``fresh_broker`` (their own instance).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.broker import BrokerProcess, find_mosquitto, mosquitto_broker


def _require_mosquitto() -> None:
    if find_mosquitto() is None:
        message = "mosquitto is not installed (apt-get install mosquitto); .ci/run installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    _require_mosquitto()
    process = mosquitto_broker(tmp_path_factory.mktemp("mosquitto"))
    process.start()
    yield process
    process.stop()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker of this test's own, free to be killed and restarted."""
    _require_mosquitto()
    process = mosquitto_broker(tmp_path / "mosquitto")
    process.start()
    yield process
    process.kill()
