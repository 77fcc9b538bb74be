"""Serves artifact chunks over MQTT: broadcast once per wave, repair on request.

Agents subscribe to ``{root}/art/{sha}/+`` first, then ask for the ranges they miss. Requests for
one artifact are merged into a single *pending* set, and a broadcaster publishes each pending
chunk once on the shared topic, so a thousand agents asking at about the same time cost one
broadcast, and an agent that joined late or lost chunks gets exactly what it asked for.
A chunk asked for while it is still pending is not queued twice; a chunk asked for after it was
sent is sent again, since the asking agent's subscription may have come after it.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import Counter
from collections.abc import Callable

from edgewise_mqtt.link import MqttLink
from edgewise_wire.manifest import ArtifactRef
from edgewise_wire.request_messages import ArtifactRequest
from edgewise_wire.topics import ROOT, chunk_topic

log = logging.getLogger("edgewise.controller.chunks")

ReadChunk = Callable[[str, int, int], bytes]  # (sha256, offset, length) -> bytes
ResolveRef = Callable[[str], ArtifactRef | None]


class PendingChunks:
    """Chunk indices still to publish, lowest first; an index already queued is queued once.

    A heap beside the set keeps each pop O(log n): an artifact of 8,000 chunks must not cost
    a scan of the set per chunk.
    """

    def __init__(self) -> None:
        self._members: set[int] = set()
        self._heap: list[int] = []

    def add(self, index: int) -> None:
        if index not in self._members:
            self._members.add(index)
            heapq.heappush(self._heap, index)

    def add_range(self, start: int, end: int) -> None:
        for index in range(start, end):
            self.add(index)

    def pop_lowest(self) -> int:
        index = heapq.heappop(self._heap)
        self._members.discard(index)
        return index

    def __bool__(self) -> bool:
        return bool(self._members)

    def __len__(self) -> int:
        return len(self._members)


class ChunkServer:
    def __init__(self, link: MqttLink, read_chunk: ReadChunk, resolve: ResolveRef, *,
                 coalesce_s: float = 0.2, root: str = ROOT) -> None:
        self._link = link
        self._root = root
        self._read = read_chunk
        self._resolve = resolve
        self._coalesce_s = coalesce_s
        self._refs: dict[str, ArtifactRef] = {}
        self._pending: dict[str, PendingChunks] = {}
        self._broadcasters: dict[str, asyncio.Task[None]] = {}
        self.stats: Counter[str] = Counter()

    def offer(self, ref: ArtifactRef) -> None:
        """Make an artifact servable without a database look-up (a rollout knows its ref)."""
        self._refs[ref.sha256] = ref

    def broadcast(self, sha256: str) -> None:
        """Queue every chunk of an artifact (a rollout wave starting)."""
        ref = self._refs.get(sha256)
        if ref is not None:
            self._enqueue(ref, [(0, ref.chunk_count)])

    def handle_request(self, device_id: str, request: ArtifactRequest) -> None:
        ref = self._refs.get(request.sha256) or self._resolve(request.sha256)
        if ref is None:
            self.stats["unknown_artifact"] += 1
            log.warning("%s asked for unknown artifact %s; dropped", device_id, request.sha256[:12])
            return
        self._refs[ref.sha256] = ref
        if any(end > ref.chunk_count for _, end in request.ranges):
            self.stats["bad_range"] += 1
            log.warning("%s asked for chunks beyond the %d of %s; dropped", device_id,
                        ref.chunk_count, ref.sha256[:12])
            return
        self.stats["requests"] += 1
        self._enqueue(ref, list(request.ranges))

    def _enqueue(self, ref: ArtifactRef, ranges: list[tuple[int, int]]) -> None:
        pending = self._pending.setdefault(ref.sha256, PendingChunks())
        for start, end in ranges:
            pending.add_range(start, end)
        task = self._broadcasters.get(ref.sha256)
        if task is None or task.done():
            self._broadcasters[ref.sha256] = asyncio.get_running_loop().create_task(
                self._broadcast(ref))

    async def _broadcast(self, ref: ArtifactRef) -> None:
        # let requests from agents that got the desired state at the same moment pile up first
        await asyncio.sleep(self._coalesce_s)
        pending = self._pending[ref.sha256]
        first = True
        try:
            while pending:
                index = pending.pop_lowest()
                offset, length = index * ref.chunk_size, ref.chunk_length(index)
                if first:
                    # off the loop: with an object store, a replica's first read of an artifact
                    # downloads and verifies the whole object into its cache
                    data = await asyncio.to_thread(self._read, ref.sha256, offset, length)
                    first = False
                else:
                    data = self._read(ref.sha256, offset, length)
                try:
                    # waiting for each PUBACK paces the broadcast to what the broker takes in
                    await self._link.publish_and_wait(chunk_topic(ref.sha256, index, root=self._root), data)
                except (TimeoutError, ConnectionError) as exc:
                    pending.add(index)
                    log.warning("chunk broadcast of %s paused: %s", ref.sha256[:12], exc)
                    await asyncio.sleep(1.0)
                    continue
                self.stats["chunks_sent"] += 1
                self.stats["bytes_sent"] += len(data)
        except Exception:
            log.exception("chunk broadcast of %s failed", ref.sha256[:12])

    async def stop(self) -> None:
        for task in self._broadcasters.values():
            task.cancel()
