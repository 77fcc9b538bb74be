"""An agent that cannot reach its broker says so at WARNING, once per cause and naming the
broker, not once per retry; its log ring keeps its own warnings for `edgewise device logs`."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig
from edge_agent.health.log_ring import LogRing
from edgewise_mqtt.link import BrokerAddress, MqttLink, describe_connect_error
from simulator.broker import free_port


def test_an_unreachable_broker_is_logged_once_per_cause(caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    port = free_port()  # nothing listens there

    async def scenario() -> MqttLink:
        link = MqttLink("ew-agent-lonely", BrokerAddress("127.0.0.1", port),
                        on_message=lambda t, p: None, reconnect_min_s=0.02,
                        reconnect_max_s=0.05)
        await link.start(wait=False)
        await asyncio.sleep(1.0)  # many retries
        await link.stop()
        return link

    with caplog.at_level(logging.WARNING, logger="edgewise.mqtt"):
        link = asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == "edgewise.mqtt"]
    assert lines == [f"ew-agent-lonely: cannot connect to broker 127.0.0.1:{port}: connection "
                     "refused (nothing listens on that port) (retrying; logged again when the "
                     "cause changes)"]
    assert link.connect_failure is not None


@pytest.mark.parametrize(("exc", "words"), [
    (socket.gaierror(-2, "Name or service not known"), "does not resolve (DNS)"),
    (ConnectionRefusedError(111, "refused"), "connection refused"),
    (TimeoutError("timed out"), "timed out"),
])
def test_connection_errors_name_their_cause(exc: OSError, words: str) -> None:
    assert words in describe_connect_error(exc)


def test_a_tls_certificate_error_names_the_certificate() -> None:
    import ssl

    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "certificate has expired"
    assert describe_connect_error(exc) == "TLS certificate not trusted: certificate has expired"


def test_the_log_ring_keeps_its_devices_recent_warnings(tmp_path: Path) -> None:
    ring = LogRing(3, mentioning="pi-1")
    other = LogRing(3, logging.INFO, mentioning="pi-2")
    log = logging.getLogger("edgewise.test.ring")
    ring.attach()
    other.attach()
    try:
        log.info("pi-1: not kept (below WARNING)")
        log.warning("pi-2: another device's line")
        for i in range(5):
            log.warning("pi-1: warning %d", i)
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("pi-1: failed")
    finally:
        ring.detach()
        other.detach()
    log.warning("pi-1: after the ring was detached")
    assert [line["message"] for line in other.tail()] == ["pi-2: another device's line"]
    lines = ring.tail()
    assert [line["message"] for line in lines] == [
        "pi-1: warning 3", "pi-1: warning 4", "pi-1: failed (ValueError: bad)"]
    assert ring.dropped == 3
    assert ring.tail(since_ts=lines[-1]["ts"]) == lines[-1:]
    assert len(ring.tail(max_lines=1)) == 1 and ring.tail(max_lines=0) == []


def test_an_offline_agent_keeps_its_warning_in_its_ring(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        agent = EdgeAgent(AgentConfig(device_id="ring-dev", data_dir=tmp_path,
                                      broker=BrokerAddress("127.0.0.1", free_port())))
        await agent.start(wait_connected=False)
        await asyncio.sleep(0.5)
        assert agent.log_ring is not None
        lines = [line["message"] for line in agent.log_ring.tail()]
        await agent.stop()
        return lines

    lines = asyncio.run(scenario())
    assert any("ew-agent-ring-dev: cannot connect to broker" in m for m in lines), lines
