"""The update's artifact over MQTT: chunks into a partial file, asked for again when missing.

One :class:`ArtifactFetch` per updater. It holds the download in progress (an
:class:`~edge_agent.download.ArtifactDownload`, which checks every chunk against its signed hash
before writing it), asks the controller for the missing chunk ranges once the broker confirmed
the chunk subscription, asks again when no chunk came for ``repair_interval_s`` or after a
reconnect, and tells :meth:`fetch` when the last chunk is in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.download import ArtifactDownload
from edge_agent.parking import Parking
from edge_agent.update.ports import ChunkLink
from edgewise_wire import encode
from edgewise_wire.manifest import ArtifactRef
from edgewise_wire.messages import ArtifactRequest
from edgewise_wire.topics import ChunkTopic, chunk_wildcard

log = logging.getLogger("edgewise.agent.update")

PROGRESS_REPORT_INTERVAL_S = 1.0


class ArtifactFetch:
    def __init__(self, link: ChunkLink, request_topic: str, download_dir: Path, *,
                 device_id: str, report: Callable[[], None], parking: Parking,
                 repair_interval_s: float) -> None:
        self.link = link
        self.request_topic = request_topic
        self.download_dir = download_dir
        self.device_id = device_id
        self.report = report
        self.parking = parking
        self.repair_interval_s = repair_interval_s
        self.download: ArtifactDownload | None = None
        self.last_chunk_at = 0.0  # monotonic
        self._done = asyncio.Event()
        self._last_progress_report = 0.0

    def part_path(self, artifact: ArtifactRef) -> Path:
        return self.download_dir / f"{artifact.sha256}.part"

    async def fetch(self, artifact: ArtifactRef) -> None:
        """Download ``artifact`` into its partial file, keeping the chunks an earlier attempt
        left that still verify; returns when every chunk is in."""
        self.clean_partials(keep=artifact.sha256)
        self._done = asyncio.Event()
        self.download = ArtifactDownload(artifact, self.part_path(artifact))
        self.last_chunk_at = time.monotonic()
        if not self.download.complete:
            self.request_missing()
            await self._done.wait()

    def current(self, artifact: ArtifactRef) -> ArtifactDownload:
        """The download in progress, or after a restart the partial file checked again, chunk by
        chunk (not kept: :meth:`keep` it to go on downloading into it)."""
        if self.download is not None:
            return self.download
        return ArtifactDownload(artifact, self.part_path(artifact))

    def keep(self, download: ArtifactDownload | None) -> None:
        self.download = download

    def on_connected(self) -> None:
        """Chunks may have been lost with the connection: ask for the missing ones again."""
        if self.download is not None and not self.download.complete:
            self.request_missing()

    def request_missing(self) -> None:
        download = self.download
        if download is None or not self.link.connected or self.parking.parked:
            return
        asyncio.create_task(self._subscribe_and_request(download))

    async def _subscribe_and_request(self, download: ArtifactDownload) -> None:
        sha = download.ref.sha256
        link = self.link
        try:
            # chunks published before the broker confirms the subscription would be missed
            await link.subscribe_and_wait(chunk_wildcard(sha))
        except (TimeoutError, ConnectionError, PermissionError) as exc:
            log.warning("%s: cannot subscribe to chunks of %s: %s", self.device_id, sha[:12], exc)
            return
        ranges = download.missing_ranges()
        if ranges and self.download is download:
            link.publish(self.request_topic, encode(ArtifactRequest(sha, tuple(ranges))))

    def on_chunk(self, chunk: ChunkTopic, payload: bytes) -> None:
        download = self.download
        if download is None or download.ref.sha256 != chunk.sha256 or self.parking.parked:
            return  # a broadcast for another device's update, or one already finished
        if not download.accept(chunk.index, payload):
            return
        self.last_chunk_at = time.monotonic()
        if self.parking.due_after_chunks(download.received):
            download.close()
            self.link.unsubscribe(chunk_wildcard(chunk.sha256))
            self.parking.park("downloading", f" after {download.received} chunks")
            return
        if download.complete:
            self.link.unsubscribe(chunk_wildcard(chunk.sha256))
            self._done.set()
        elif time.monotonic() - self._last_progress_report > PROGRESS_REPORT_INTERVAL_S:
            self._last_progress_report = time.monotonic()
            self.report()

    async def repair_loop(self) -> None:
        """Ask again for the missing chunks when none arrived for ``repair_interval_s``."""
        interval = self.repair_interval_s
        while True:
            await asyncio.sleep(interval / 2)
            download = self.download
            if download is None or download.complete or not self.link.connected \
                    or self.parking.parked:
                continue
            if time.monotonic() - self.last_chunk_at > interval:
                self.last_chunk_at = time.monotonic()
                log.info("%s: no chunk for %.1fs, asking again for %d missing ranges",
                         self.device_id, interval, len(download.missing_ranges()))
                self.request_missing()

    def discard(self) -> None:
        """Drop the download in progress and its partial file."""
        download, self.download = self.download, None
        if download is not None:
            if self.link.connected:
                self.link.unsubscribe(chunk_wildcard(download.ref.sha256))
            download.discard()

    def close(self) -> None:
        if self.download is not None:
            self.download.close()

    def clean_partials(self, keep: str | None) -> None:
        """Delete partial files other than ``keep``'s (all of them with None)."""
        if self.download_dir.exists():
            for part in self.download_dir.glob("*.part"):
                if keep is None or not part.name.startswith(keep):
                    part.unlink(missing_ok=True)
