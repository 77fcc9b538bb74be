"""The update's artifact: from the signed URL if there is one, else (or then) over MQTT chunks.

When the signed manifest names an HTTP(S) URL for the artifact (an object store) and the agent's
``artifact_http`` setting allows it, the missing chunks are first fetched from there with range
requests (:mod:`edge_agent.http_fetch`, in a worker thread); MQTT chunks stay the fallback for
the chunks still missing when the URL is unreachable, refuses, or serves bytes that do not match
the signed chunk hashes. Each fallback is logged and counted (``stats``, in the agent's status).

One :class:`ArtifactFetch` per updater. It holds the download in progress (an
:class:`~edge_agent.download.ArtifactDownload`, which checks every chunk against its signed hash
before writing it), asks the controller for the missing chunk ranges once the broker confirmed
the chunk subscription, asks again when no chunk came for ``repair_interval_s`` or after a
reconnect, and tells :meth:`fetch` when the last chunk is in.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from edge_agent.download import ArtifactDownload
from edge_agent.http_fetch import HttpOutcome, HttpStats, fetch_over_http
from edge_agent.parking import Parking
from edge_agent.update.ports import ChunkLink
from edgewise_wire import encode
from edgewise_wire.manifest import ArtifactRef
from edgewise_wire.request_messages import ArtifactRequest
from edgewise_wire.topics import ROOT, ChunkTopic, chunk_wildcard

log = logging.getLogger("edgewise.agent.update")

PROGRESS_REPORT_INTERVAL_S = 1.0


class ArtifactFetch:
    def __init__(self, link: ChunkLink, request_topic: str, download_dir: Path, *,
                 device_id: str, report: Callable[[], None], parking: Parking,
                 repair_interval_s: float, use_url: bool = True, root: str = ROOT) -> None:
        self.link = link
        self.request_topic = request_topic
        self.root = root  # the topic root chunks are broadcast under
        self.download_dir = download_dir
        self.device_id = device_id
        self.report = report
        self.parking = parking
        self.repair_interval_s = repair_interval_s
        self.download: ArtifactDownload | None = None
        self.last_chunk_at = 0.0  # monotonic
        self._done = asyncio.Event()
        self._last_progress_report = 0.0
        self.use_url = use_url
        # set while chunks come from the URL: no MQTT requests, chunks on the topic ignored
        self._http: threading.Event | None = None  # its cancel flag
        # taken by the HTTP thread around each chunk write, and by discard()/close() before
        # they close the partial file, so no write lands on a closed (or reused) descriptor
        self._write_lock = threading.Lock()
        self.stats: Counter[str] = Counter()

    def part_path(self, artifact: ArtifactRef) -> Path:
        return self.download_dir / f"{artifact.sha256}.part"

    async def fetch(self, artifact: ArtifactRef) -> None:
        """Download ``artifact`` into its partial file, keeping the chunks an earlier attempt
        left that still verify; returns when every chunk is in."""
        self.clean_partials(keep=artifact.sha256)
        self._done = asyncio.Event()
        self.download = ArtifactDownload(artifact, self.part_path(artifact))
        self.last_chunk_at = time.monotonic()
        if self.download.complete:
            return
        if artifact.url is not None and self.use_url and \
                await self._from_url(self.download, artifact.url) is HttpOutcome.COMPLETE:
            return
        self.request_missing()
        await self._done.wait()

    async def _from_url(self, download: ArtifactDownload, url: str) -> HttpOutcome:
        cancel = threading.Event()
        self._http = cancel
        loop = asyncio.get_running_loop()
        stats = HttpStats()

        def progress() -> None:  # in the HTTP thread
            self.last_chunk_at = time.monotonic()
            if time.monotonic() - self._last_progress_report > PROGRESS_REPORT_INTERVAL_S:
                self._last_progress_report = time.monotonic()
                loop.call_soon_threadsafe(self.report)

        self.stats["url_downloads"] += 1
        try:
            outcome = await asyncio.to_thread(
                fetch_over_http, download, url, cancel=cancel, guard=self._write_lock,
                on_progress=progress, stats=stats)
        finally:
            cancel.set()  # also when this task is cancelled: the thread stops at its next chunk
            if self._http is cancel:
                self._http = None
            self.stats["url_bytes"] += stats.bytes_received
            self.stats["url_interruptions"] += stats.interruptions
        if outcome is HttpOutcome.COMPLETE:
            log.info("%s: artifact %s downloaded from its URL (%d requests, %d interruptions)",
                     self.device_id, download.ref.sha256[:12], stats.requests,
                     stats.interruptions)
        elif outcome is not HttpOutcome.CANCELLED:
            self.stats[f"url_{outcome.value}"] += 1
            self.stats["url_fallbacks"] += 1
            log.warning("%s: artifact %s from its URL: %s after %d of %d chunks; the missing "
                        "chunks come over MQTT", self.device_id, download.ref.sha256[:12],
                        outcome.value, download.received, download.ref.chunk_count)
        return outcome

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
        if download is None or not self.link.connected or self.parking.parked \
                or self._http is not None:
            return
        asyncio.create_task(self._subscribe_and_request(download))

    async def _subscribe_and_request(self, download: ArtifactDownload) -> None:
        sha = download.ref.sha256
        link = self.link
        try:
            # chunks published before the broker confirms the subscription would be missed
            await link.subscribe_and_wait(chunk_wildcard(sha, root=self.root))
        except (TimeoutError, ConnectionError, PermissionError) as exc:
            log.warning("%s: cannot subscribe to chunks of %s: %s", self.device_id, sha[:12], exc)
            return
        ranges = download.missing_ranges()
        if ranges and self.download is download:
            link.publish(self.request_topic, encode(ArtifactRequest(sha, tuple(ranges))))

    def on_chunk(self, chunk: ChunkTopic, payload: bytes) -> None:
        download = self.download
        if download is None or download.ref.sha256 != chunk.sha256 or self.parking.parked \
                or self._http is not None:
            return  # another device's update, one already finished, or one the URL serves
        if not download.accept(chunk.index, payload):
            return
        self.last_chunk_at = time.monotonic()
        if self.parking.due_after_chunks(download.received):
            download.close()
            self.link.unsubscribe(chunk_wildcard(chunk.sha256, root=self.root))
            self.parking.park("downloading", f" after {download.received} chunks")
            return
        if download.complete:
            self.link.unsubscribe(chunk_wildcard(chunk.sha256, root=self.root))
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
                    or self.parking.parked or self._http is not None:
                continue
            if time.monotonic() - self.last_chunk_at > interval:
                self.last_chunk_at = time.monotonic()
                log.info("%s: no chunk for %.1fs, asking again for %d missing ranges",
                         self.device_id, interval, len(download.missing_ranges()))
                self.request_missing()

    def discard(self) -> None:
        """Drop the download in progress and its partial file."""
        download, self.download = self.download, None
        self._stop_http()
        if download is not None:
            if self.link.connected:
                self.link.unsubscribe(chunk_wildcard(download.ref.sha256, root=self.root))
            with self._write_lock:
                download.discard()

    def close(self) -> None:
        self._stop_http()
        if self.download is not None:
            with self._write_lock:
                self.download.close()

    def _stop_http(self) -> None:
        if self._http is not None:
            self._http.set()

    def clean_partials(self, keep: str | None) -> None:
        """Delete partial files other than ``keep``'s (all of them with None)."""
        if self.download_dir.exists():
            for part in self.download_dir.glob("*.part"):
                if keep is None or not part.name.startswith(keep):
                    part.unlink(missing_ok=True)
