"""Resumable, verified download of one artifact from MQTT chunks into a partial file.

Every chunk is checked against the hash the (signed) manifest lists for it before it is written,
at its own offset, so the partial file never holds more than the declared length nor an unchecked
byte. After a restart the partial file is re-hashed chunk by chunk, and only the missing ranges
are asked for again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import weakref
from pathlib import Path

from edge_agent.durable import fsync_dir
from edgewise_wire.manifest import ArtifactRef

log = logging.getLogger("edgewise.agent.download")


class ArtifactVerificationError(Exception):
    """The assembled artifact does not match its manifest: it must not be activated."""


class ArtifactDownload:
    def __init__(self, ref: ArtifactRef, part_path: Path) -> None:
        self.ref = ref
        self.part_path = part_path
        self.rejected_chunks = 0
        self._have: set[int] = set()
        # The partial file stays open while chunks arrive: an open and a close per chunk cost a
        # thousand agents on one loop (the simulator) two system calls per chunk each. Closed by
        # finalize()/discard()/close(), or when this object is dropped.
        self._fd = -1
        self._closer: weakref.finalize | None = None
        part_path.parent.mkdir(parents=True, exist_ok=True)
        if part_path.exists():
            self._recover()
        else:
            part_path.touch()

    def _recover(self) -> None:
        """Keep the chunks of an earlier, interrupted attempt that still verify."""
        size = self.part_path.stat().st_size
        if size > self.ref.size:
            os.truncate(self.part_path, self.ref.size)
        with self.part_path.open("rb") as f:
            for index in range(self.ref.chunk_count):
                f.seek(index * self.ref.chunk_size)
                data = f.read(self.ref.chunk_length(index))
                if len(data) == self.ref.chunk_length(index) and \
                        hashlib.sha256(data).hexdigest() == self.ref.chunk_sha256[index]:
                    self._have.add(index)
        log.info("resuming %s: %d of %d chunks already verified", self.ref.sha256[:12],
                 len(self._have), self.ref.chunk_count)

    @property
    def received(self) -> int:
        return len(self._have)

    def has(self, index: int) -> bool:
        """Whether chunk ``index`` is on disk, verified."""
        return index in self._have

    @property
    def complete(self) -> bool:
        return len(self._have) == self.ref.chunk_count

    def missing_ranges(self, limit: int = 1000) -> list[tuple[int, int]]:
        """Missing chunk indices as [start, end) ranges, at most ``limit`` ranges."""
        ranges: list[tuple[int, int]] = []
        start: int | None = None
        for index in range(self.ref.chunk_count + 1):
            missing = index < self.ref.chunk_count and index not in self._have
            if missing and start is None:
                start = index
            elif not missing and start is not None:
                ranges.append((start, index))
                start = None
                if len(ranges) >= limit:
                    break
        return ranges

    def accept(self, index: int, data: bytes) -> bool:
        """Write chunk ``index`` if it verifies; return whether it was new and good."""
        if index in self._have:
            return False
        if not 0 <= index < self.ref.chunk_count:
            self.rejected_chunks += 1
            log.warning("chunk %d of %s is out of range (%d chunks)", index, self.ref.sha256[:12],
                        self.ref.chunk_count)
            return False
        if len(data) != self.ref.chunk_length(index) or \
                hashlib.sha256(data).hexdigest() != self.ref.chunk_sha256[index]:
            self.rejected_chunks += 1
            log.warning("chunk %d of %s failed verification (%d bytes); will ask again", index,
                        self.ref.sha256[:12], len(data))
            return False
        if self._closer is None or not self._closer.alive:
            self._fd = os.open(self.part_path, os.O_WRONLY)
            self._closer = weakref.finalize(self, os.close, self._fd)
        os.pwrite(self._fd, data, index * self.ref.chunk_size)
        self._have.add(index)
        return True

    def close(self) -> None:
        """Close the partial file (chunks accepted later open it again)."""
        if self._closer is not None:
            self._closer()

    def finalize(self, destination: Path) -> Path:
        """Verify the whole file, make it durable and move it into place atomically."""
        if not self.complete:
            raise ArtifactVerificationError(
                f"artifact {self.ref.sha256[:12]} incomplete: {self.received}/{self.ref.chunk_count}")
        self.close()
        h = hashlib.sha256()
        size = 0
        with self.part_path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                size += len(block)
            os.fsync(f.fileno())
        if size != self.ref.size or h.hexdigest() != self.ref.sha256:
            self.discard()
            raise ArtifactVerificationError(
                f"artifact hash or size mismatch: got {h.hexdigest()[:12]}/{size} bytes, "
                f"manifest says {self.ref.sha256[:12]}/{self.ref.size} bytes")
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.part_path, destination)
        fsync_dir(destination.parent)
        return destination

    def discard(self) -> None:
        self.close()
        self._have.clear()
        self.part_path.unlink(missing_ok=True)

