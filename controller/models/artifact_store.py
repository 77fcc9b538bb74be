"""Content-addressed artifact files: ``root/ab/<sha256>``.

Artifacts are immutable and named by their hash, so a write is idempotent, readers never see a
half-written file (temp file + ``os.replace``), and the chunk server can read any byte range
without loading a 500 MiB model into memory.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from controller.errors import NotFoundError, StorageError, ValidationError

_SHA256 = re.compile(r"[0-9a-f]{64}")
_READ_BLOCK = 1024 * 1024


def check_sha256(sha: str) -> str:
    """Return ``sha`` if it is 64 lowercase hex digits; anything else could escape the root."""
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise ValidationError(f"not a sha256 hex digest: {sha!r}")
    return sha


class ArtifactBlobs(Protocol):
    """What the registry needs of an artifact store: this module's files, or an object store
    (:mod:`controller.models.object_store`)."""

    def put(self, data: bytes) -> str: ...
    def get(self, sha: str) -> bytes: ...
    def open_range(self, sha: str, offset: int, length: int) -> bytes: ...
    def exists(self, sha: str) -> bool: ...


class ArtifactStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        check_sha256(sha)
        return self.root / sha[:2] / sha

    def exists(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def put(self, data: bytes) -> str:
        """Store ``data`` and return its sha256; storing the same bytes again is a no-op
        (a damaged copy already on disk is replaced rather than trusted)."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if target.is_file() and self.verify(sha):
            return sha
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{sha[:8]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise StorageError(f"cannot write artifact {sha}: {e}") from e
        return sha

    def get(self, sha: str) -> bytes:
        try:
            return self.path(sha).read_bytes()
        except FileNotFoundError:
            raise NotFoundError("artifact", sha) from None

    def size(self, sha: str) -> int:
        try:
            return self.path(sha).stat().st_size
        except FileNotFoundError:
            raise NotFoundError("artifact", sha) from None

    def open_range(self, sha: str, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset``; shorter (possibly empty) at the end of the file."""
        if offset < 0 or length < 0:
            raise ValidationError(f"bad range: offset={offset} length={length}")
        try:
            with self.path(sha).open("rb") as f:
                f.seek(offset)
                return f.read(length)
        except FileNotFoundError:
            raise NotFoundError("artifact", sha) from None

    def verify(self, sha: str) -> bool:
        """Rehash the file: catches bit rot or tampering before it is served to a fleet."""
        h = hashlib.sha256()
        try:
            with self.path(sha).open("rb") as f:
                while block := f.read(_READ_BLOCK):
                    h.update(block)
        except FileNotFoundError:
            raise NotFoundError("artifact", sha) from None
        return h.hexdigest() == sha
