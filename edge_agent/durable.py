"""Durable file replacement: what the agent's crash safety rests on (slots, journal, downloads).

A file is replaced by writing a temporary file beside it, fsyncing it, renaming it over the old
one (atomic on POSIX file systems) and fsyncing the directory, so that after a power cut the
path holds the old content or the new content, never a mix, and the rename itself is on disk.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, atomically and durably (through ``{path}.tmp``)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
