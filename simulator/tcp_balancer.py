"""A round-robin TCP load balancer in front of a clustered broker, as a deployment would put one.

Devices and controllers are configured with one broker address; in front of a broker cluster that
address is a TCP load balancer (HAProxy, a cloud NLB, ...) that hands each new connection to a
live node. This is the least such a balancer does, so that the tests see what a fleet sees when a
node dies: its connections drop, the clients reconnect (with their usual backoff) and land on
the nodes that are left.

It runs its own event loop in a thread, so it outlives the event loops of the code under test,
and counts the connections it handed to each backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import Counter
from collections.abc import Sequence

from edgewise_mqtt.link import BrokerAddress

CONNECT_TIMEOUT_S = 1.0


class TcpBalancer:
    def __init__(self, backends: Sequence[BrokerAddress], host: str = "127.0.0.1") -> None:
        if not backends:
            raise ValueError("a balancer needs at least one backend")
        self.backends = list(backends)
        self.host = host
        self.port = 0
        self.handed: Counter[int] = Counter()  # backend index -> connections handed to it
        self.handed_order: list[int] = []  # backend index of each connection, in accept order
        self.refused = 0  # connections no backend would take
        self._next = itertools.cycle(range(len(self.backends)))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> BrokerAddress:
        return BrokerAddress(self.host, self.port)

    def start(self) -> None:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._accept, self.host, 0))
            self.port = int(self._server.sockets[0].getsockname()[1])
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="tcp-balancer", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the TCP balancer did not start")

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._open):
                writer.close()

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()
        self._loop = None

    async def _connect_backend(self) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
        start = next(self._next)
        for k in range(len(self.backends)):
            index = (start + k) % len(self.backends)
            backend = self.backends[index]
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(backend.host, backend.port), CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError):
                continue  # that node is down: try the next one, as a health-checked LB would
            return index, reader, writer
        raise ConnectionError("no backend accepts connections")

    async def _accept(self, client_r: asyncio.StreamReader,
                      client_w: asyncio.StreamWriter) -> None:
        try:
            index, backend_r, backend_w = await self._connect_backend()
        except ConnectionError:
            self.refused += 1
            client_w.close()
            return
        self.handed[index] += 1
        self.handed_order.append(index)
        self._open.update((client_w, backend_w))
        try:
            await asyncio.gather(self._pipe(client_r, backend_w), self._pipe(backend_r, client_w))
        finally:
            self._open.difference_update((client_w, backend_w))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # one side gone: close the other, so the client sees the node's death at once
            with contextlib.suppress(Exception):
                writer.close()
