"""The fixtures every tier may use: a real Mosquitto on a free port (one per session and worker,
or one of the test's own that it may kill and restart), and the local PostgreSQL with a fresh
database per test module. Registered by ``tests/conftest.py``."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from simulator.broker import BrokerProcess, find_mosquitto, mosquitto_broker
from simulator.nats_cluster import NatsCluster, find_nats_server
from simulator.tcp_balancer import TcpBalancer


def require_mosquitto() -> None:
    if find_mosquitto() is None:
        message = "mosquitto is not installed (apt-get install mosquitto); .ci/run installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    require_mosquitto()
    process = mosquitto_broker(tmp_path_factory.mktemp("mosquitto"))
    process.start()
    yield process
    process.stop()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker of this test's own, free to be killed and restarted."""
    require_mosquitto()
    process = mosquitto_broker(tmp_path / "mosquitto")
    process.start()
    yield process
    process.kill()


def require_nats_server() -> None:
    if find_nats_server() is None:
        message = "nats-server is not installed (apt-get install nats-server); scripts/test installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A 3-node NATS cluster of this test's own (MQTT listener and JetStream on every node, on
    free ports; the system's nats-server on 4222 is not touched); nodes may be killed."""
    require_nats_server()
    cluster = NatsCluster(tmp_path / "nats")
    cluster.start()
    yield cluster
    for node in cluster.nodes:
        node.process.kill()


@pytest.fixture
def nats_balancer(nats_cluster: NatsCluster) -> Iterator[TcpBalancer]:
    """A round-robin TCP balancer in front of ``nats_cluster``: the one address a fleet uses."""
    balancer = TcpBalancer(nats_cluster.addresses)
    balancer.start()
    yield balancer
    balancer.stop()


PG_ADMIN_URL = os.environ.get(
    "EDGEWISE_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Any]:
    import sqlalchemy as sa  # only where PostgreSQL is used: a device's test run has none

    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT",
                              connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as e:  # any failure to connect means "no server"
        engine.dispose()
        reason = f"PostgreSQL unreachable at {PG_ADMIN_URL}: {type(e).__name__}: {e}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    yield engine
    engine.dispose()


@contextmanager
def fresh_database(pg_admin: Any) -> Iterator[str]:
    """An empty PostgreSQL database of its own; dropped (even with open connections) after."""
    import sqlalchemy as sa

    name = f"ew_test_{secrets.token_hex(6)}"
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield pg_admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with pg_admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def pg_module_url(pg_admin: Any) -> Iterator[str]:
    """A fresh database for this test module."""
    with fresh_database(pg_admin) as url:
        yield url
