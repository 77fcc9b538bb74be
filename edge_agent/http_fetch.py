"""An artifact over HTTP(S) from the URL its signed manifest names: range requests, resumable.

Blocking (standard library ``http.client`` only: nothing new to install on a device), run in a
worker thread by :mod:`edge_agent.artifact_fetch`. It asks for the chunk ranges the partial file
still misses (``Range: bytes=a-b``), reads the body chunk by chunk and hands every chunk to
:meth:`ArtifactDownload.accept`, which writes it only if it matches the signed chunk hash. So:

* an interrupted transfer (connection reset, timeout, short body) keeps every verified chunk and
  the next request starts at the first missing byte; after ``max_attempts`` tries in a row that
  brought no new chunk, the URL counts as unreachable;
* a chunk that does not match its hash means the object at the URL is not the signed artifact:
  nothing more is taken from it (``TAMPERED``), the caller falls back to MQTT chunks;
* a server that ignores ranges and answers ``200`` with the whole object is read from the start,
  chunks already on disk skipped.

Redirects are not followed and no proxy settings are read: the URL is the one that was signed.
"""

from __future__ import annotations

import enum
import http.client
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from edge_agent.download import ArtifactDownload

log = logging.getLogger("edgewise.agent.http")

READ_TIMEOUT_S = 20.0


class HttpOutcome(enum.Enum):
    COMPLETE = "complete"  # every chunk is in the partial file, verified
    TAMPERED = "tampered"  # a chunk from the URL did not match its signed hash
    UNREACHABLE = "unreachable"  # errors on every try (or a refusal such as 403/404)
    CANCELLED = "cancelled"  # the update went elsewhere meanwhile


@dataclass
class HttpStats:
    requests: int = 0
    bytes_received: int = 0
    chunks_accepted: int = 0
    interruptions: int = 0


class _Refused(Exception):
    """An answer that no retry will change (403, 404, a wrong Content-Range)."""


def fetch_over_http(download: ArtifactDownload, url: str, *, cancel: threading.Event,
                    guard: threading.Lock | None = None, max_attempts: int = 4, retry_delay_s: float = 0.5,
                    timeout_s: float = READ_TIMEOUT_S,
                    on_progress: Callable[[], None] | None = None,
                    stats: HttpStats | None = None) -> HttpOutcome:
    """Fill ``download`` from ``url``; see the module's docstring for the outcomes.

    ``cancel``: checked before each chunk. ``guard``: held around each chunk write; whoever
    closes or deletes the partial file sets ``cancel`` and takes it first."""
    guard = guard if guard is not None else threading.Lock()
    stats = stats if stats is not None else HttpStats()
    ref = download.ref
    failures = 0
    while not download.complete:
        if cancel.is_set():
            return HttpOutcome.CANCELLED
        before = download.received
        try:
            for start, end in download.missing_ranges(limit=64):
                outcome = _fetch_range(download, url, start, end, cancel, guard, timeout_s,
                                       stats, on_progress)
                if outcome is not None:
                    return outcome
        except _Refused as exc:
            log.warning("artifact %s from %s refused: %s", ref.sha256[:12], _safe(url), exc)
            return HttpOutcome.UNREACHABLE
        except (OSError, http.client.HTTPException) as exc:
            stats.interruptions += 1
            log.info("artifact %s from %s interrupted after %d of %d chunks: %s",
                     ref.sha256[:12], _safe(url), download.received, ref.chunk_count,
                     exc or type(exc).__name__)
        if download.received > before:
            failures = 0  # progress: the next interruption starts a new count
        elif not download.complete:
            failures += 1
            if failures >= max_attempts:
                return HttpOutcome.UNREACHABLE
            if cancel.wait(retry_delay_s * failures):
                return HttpOutcome.CANCELLED
    return HttpOutcome.COMPLETE


def _fetch_range(download: ArtifactDownload, url: str, start: int, end: int,
                 cancel: threading.Event, guard: threading.Lock, timeout_s: float,
                 stats: HttpStats,
                 on_progress: Callable[[], None] | None) -> HttpOutcome | None:
    """Chunks [start, end) in one request; None when the range went through."""
    ref = download.ref
    first_byte = start * ref.chunk_size
    last_byte = min(end * ref.chunk_size, ref.size) - 1
    conn = _connect(url, timeout_s)
    try:
        parts = urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        conn.request("GET", target, headers={"Range": f"bytes={first_byte}-{last_byte}",
                                             "Accept-Encoding": "identity"})
        stats.requests += 1
        response = conn.getresponse()
        if response.status == 206:
            offset = _content_range_start(response.getheader("Content-Range"))
            if offset != first_byte:
                raise _Refused(f"asked for bytes from {first_byte}, got a range from {offset}")
            index = start
        elif response.status == 200:
            index = 0  # the whole object: read from the start, skip what is on disk
        elif response.status in (408, 429) or response.status >= 500:
            raise http.client.HTTPException(f"HTTP {response.status} {response.reason}")
        else:
            raise _Refused(f"HTTP {response.status} {response.reason}")
        while index < end:
            if cancel.is_set():
                return HttpOutcome.CANCELLED
            length = ref.chunk_length(index)
            data = response.read(length)
            stats.bytes_received += len(data)
            if len(data) != length:
                raise http.client.IncompleteRead(data, length - len(data))
            if index >= start and not download.has(index):
                with guard:
                    if cancel.is_set():
                        return HttpOutcome.CANCELLED
                    accepted = download.accept(index, data)
                if not accepted:
                    log.warning("chunk %d of %s from %s does not match its signed hash: the "
                                "object there is not the signed artifact", index,
                                ref.sha256[:12], _safe(url))
                    return HttpOutcome.TAMPERED
                stats.chunks_accepted += 1
                if on_progress is not None:
                    on_progress()
            index += 1
        return None
    finally:
        conn.close()


def _connect(url: str, timeout_s: float) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    if parts.hostname is None:
        raise _Refused("the URL names no host")
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout_s)
    if parts.scheme == "http":
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    raise _Refused(f"unsupported scheme {parts.scheme!r}")


def _content_range_start(header: str | None) -> int:
    # "bytes 100-199/1000"
    try:
        unit, _, rest = (header or "").partition(" ")
        if unit != "bytes":
            raise ValueError(header)
        return int(rest.split("-", 1)[0])
    except ValueError:
        raise _Refused(f"unreadable Content-Range {header!r}") from None


def _safe(url: str) -> str:
    """The URL without its query (a presigned URL's query holds a signature)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
