"""The link proxy: it finds the device in the CONNECT packet, forwards, delays, cuts, refuses."""

from __future__ import annotations

import asyncio
import time

import pytest

from edgewise_mqtt.link import MqttLink
from simulator.broker import BrokerProcess
from simulator.scenario_links import (
    ConnectParseError,
    LinkFault,
    LinkProxy,
    connect_client_id,
)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _connect_packet(client_id: str, level: int) -> bytes:
    """A CONNECT packet as the MQTT 3.1.1 / 5 specifications lay it out."""
    header = b"\x00\x04MQTT" + bytes([level, 0x02]) + (30).to_bytes(2, "big")
    if level == 5:
        header += b"\x05\x11\x00\x00\x00\x0a"  # properties: session expiry 10 s
    cid = client_id.encode()
    body = header + len(cid).to_bytes(2, "big") + cid + b"x" * 200  # a will or password after
    return b"\x10" + _varint(len(body)) + body


@pytest.mark.parametrize("level", [4, 5])
def test_the_client_id_is_read_from_a_connect_packet(level: int) -> None:
    packet = _connect_packet("ew-agent-pi-7", level)
    assert connect_client_id(packet) == "ew-agent-pi-7"


def test_garbage_is_not_taken_for_a_connect() -> None:
    with pytest.raises(ConnectParseError):
        connect_client_id(b"\x30\x02ab")
    with pytest.raises(ConnectParseError):
        connect_client_id(b"\x10\xff")


@pytest.mark.broker
def test_proxied_link_is_delayed_cut_and_refused(broker: BrokerProcess) -> None:
    async def scenario() -> None:
        proxy = LinkProxy(broker.address)
        address = await proxy.start()
        got: list[float] = []
        link = MqttLink("ew-agent-proxied-1", address,
                        on_message=lambda topic, payload: got.append(time.monotonic()),
                        on_connect=lambda: link.subscribe("proxy-test/echo"),
                        reconnect_min_s=0.05, reconnect_max_s=0.2)
        await link.start(timeout=10)
        try:
            assert proxy.stats["connections"] == 1
            await asyncio.sleep(0.3)  # the subscription reaches the broker

            async def round_trip() -> float:
                n = len(got)
                t0 = time.monotonic()
                await link.publish_and_wait("proxy-test/echo", b"x")
                for _ in range(100):
                    if len(got) > n:
                        return got[-1] - t0
                    await asyncio.sleep(0.02)
                raise AssertionError("no echo")

            fast = await round_trip()
            proxy.set_fault("proxied-1", LinkFault(latency_s=0.25))
            slow = await round_trip()
            assert slow >= 0.45 > fast  # PUBLISH out and back in, 0.25 s each way

            proxy.set_fault("proxied-1", None)
            before = link.connect_count
            assert proxy.cut("proxied-1") == 2  # both sides of the one connection
            for _ in range(100):
                if link.connect_count > before and link.connected:
                    break
                await asyncio.sleep(0.05)
            assert link.connect_count > before

            proxy.set_fault("proxied-1", LinkFault(offline=True))
            await asyncio.sleep(0.5)
            assert not link.connected
            assert proxy.stats["refused_offline"] >= 1
            proxy.set_fault("proxied-1", None)
            await link.wait_connected(10)
        finally:
            await link.stop()
            await proxy.stop()

    asyncio.run(scenario())
