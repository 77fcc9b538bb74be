"""A TCP proxy between simulated agents and the broker, for link faults a socket really sees.

Devices that a scenario gives a bad link connect to this proxy instead of the broker; it reads
the MQTT CONNECT packet to learn which device a connection belongs to, then forwards bytes both
ways, on the simulator's event loop, applying that device's current :class:`LinkFault`:

* ``latency_s``: every piece of data is held that long before it is forwarded (each direction,
  so a round trip gains twice that); order and throughput are kept;
* ``bandwidth_kbps``: forwarding is paced to that many kilobits per second in each direction;
* ``loss``: TCP never loses bytes, it retransmits, so loss shows as stalls: with probability
  ``loss`` a piece of data waits a retransmission timeout (0.2 s, doubling on consecutive losses
  up to 3.2 s) before it is forwarded;
* ``offline``: the device's connections are closed and new ones are accepted and closed at once
  (a partition: the agent's reconnect backoff runs until the fault is lifted).

:meth:`LinkProxy.cut` closes a device's connections once (both sides see a reset), which is what
a NAT timeout or a flaky radio does. Everything else (packet reordering, a half-open connection
kept alive by nobody) is not simulated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass

from edgewise_mqtt.link import BrokerAddress

log = logging.getLogger("edgewise.simulator.links")

MAX_CONNECT_BYTES = 64 * 1024
RTO_S = 0.2
RTO_MAX_S = 3.2
CLIENT_ID_PREFIX = "ew-agent-"


@dataclass(frozen=True)
class LinkFault:
    latency_s: float = 0.0
    bandwidth_kbps: float | None = None
    loss: float = 0.0
    offline: bool = False


GOOD_LINK = LinkFault()


class ConnectParseError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, mult = 0, 1
    for _ in range(4):
        if pos >= len(data):
            raise ConnectParseError("truncated length")
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) * mult
        if not byte & 0x80:
            return value, pos
        mult *= 128
    raise ConnectParseError("malformed length")


def connect_client_id(packet: bytes) -> str:
    """The client id of an MQTT 3.1.1 or 5 CONNECT packet (fixed header included)."""
    if not packet or packet[0] != 0x10:
        raise ConnectParseError("not a CONNECT packet")
    _, pos = _varint(packet, 1)
    name_len = int.from_bytes(packet[pos:pos + 2], "big")
    pos += 2 + name_len
    if pos + 4 > len(packet):
        raise ConnectParseError("truncated variable header")
    level = packet[pos]
    pos += 4  # level, flags, keepalive (2)
    if level == 5:
        props, pos = _varint(packet, pos)
        pos += props
    id_len = int.from_bytes(packet[pos:pos + 2], "big")
    if pos + 2 + id_len > len(packet):
        raise ConnectParseError("truncated client id")
    return packet[pos + 2:pos + 2 + id_len].decode("utf-8", "replace")


async def _read_packet(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(1)
    length_bytes = b""
    while True:
        b = await reader.readexactly(1)
        length_bytes += b
        if not b[0] & 0x80 or len(length_bytes) == 4:
            break
    length, _ = _varint(head + length_bytes, 1)
    if length > MAX_CONNECT_BYTES:
        raise ConnectParseError(f"CONNECT of {length} bytes")
    return head + length_bytes + await reader.readexactly(length)


class LinkProxy:
    def __init__(self, upstream: BrokerAddress, *, seed: int = 0) -> None:
        self.upstream = upstream
        self.faults: dict[str, LinkFault] = {}
        self.stats: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._conns: dict[str, set[asyncio.StreamWriter]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.address: BrokerAddress | None = None

    async def start(self) -> BrokerAddress:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = BrokerAddress("127.0.0.1", int(port), protocol=self.upstream.protocol,
                                     username=self.upstream.username,
                                     password=self.upstream.password)
        return self.address

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for device_id in list(self._conns):
            self.cut(device_id)
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def set_fault(self, device_id: str, fault: LinkFault | None) -> None:
        if fault is None or fault == GOOD_LINK:
            self.faults.pop(device_id, None)
        else:
            self.faults[device_id] = fault
            if fault.offline:
                self.cut(device_id)

    def cut(self, device_id: str) -> int:
        """Close the device's proxied connections now; return how many were open."""
        writers = self._conns.pop(device_id, set())
        for w in writers:
            with contextlib.suppress(Exception):
                w.transport.abort()
        if writers:
            self.stats["cuts"] += len(writers)
        return len(writers)

    def fault(self, device_id: str) -> LinkFault:
        return self.faults.get(device_id, GOOD_LINK)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            packet = await asyncio.wait_for(_read_packet(reader), 10)
            client_id = connect_client_id(packet)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectParseError, ConnectionError) as exc:
            self.stats["bad_connects"] += 1
            log.warning("link proxy: dropped a connection that sent no valid CONNECT: %s", exc)
            writer.transport.abort()
            return
        device_id = client_id.removeprefix(CLIENT_ID_PREFIX)
        if self.fault(device_id).offline:
            self.stats["refused_offline"] += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream.host,
                                                                 self.upstream.port)
        except OSError as exc:
            self.stats["upstream_failures"] += 1
            log.warning("link proxy: broker %s unreachable for %s: %s", self.upstream, device_id,
                        exc)
            writer.transport.abort()
            return
        self.stats["connections"] += 1
        conns = self._conns.setdefault(device_id, set())
        conns.update((writer, up_writer))
        up_writer.write(packet)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pump(device_id, src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, device_id: str, src: asyncio.StreamReader,
                    dst: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.get_running_loop().create_task(self._send(device_id, queue, dst))
        losses = 0
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                fault = self.fault(device_id)
                due = time.monotonic() + fault.latency_s
                if fault.loss and self._rng.random() < fault.loss:
                    due += min(RTO_S * 2 ** losses, RTO_MAX_S)
                    losses += 1
                    self.stats["stalls"] += 1
                else:
                    losses = 0
                queue.put_nowait((due, data))
        except (ConnectionError, OSError):
            pass
        finally:
            queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await sender
            with contextlib.suppress(Exception):
                dst.transport.abort()
            self._conns.get(device_id, set()).discard(dst)

    async def _send(self, device_id: str, queue: asyncio.Queue[tuple[float, bytes] | None],
                    dst: asyncio.StreamWriter) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            due, data = item
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if dst.is_closing():
                return
            dst.write(data)
            self.stats["bytes"] += len(data)
            kbps = self.fault(device_id).bandwidth_kbps
            if kbps:
                await asyncio.sleep(len(data) * 8 / (kbps * 1000))
            with contextlib.suppress(ConnectionError):
                await dst.drain()
