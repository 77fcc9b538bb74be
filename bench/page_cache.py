"""Drop the Python environment's shared libraries from the page cache, so that a process started
next reads them cold, as on a device after boot.

Why it matters for resident memory: how a library's pages sit in the page cache changes how many
of them a process that maps it has resident. A library file written in one large write (as an
installer does) is cached in large folios, and a page fault on it maps the whole folio around the
address; the same file read back from disk after a reboot is cached in smaller pieces and fewer
pages end up mapped. On this machine that is about 9 MiB more file-backed RSS for onnxruntime's
library alone (docs/benchmarks.md). ``posix_fadvise(POSIX_FADV_DONTNEED)`` asks the kernel to
drop a file's clean cached pages (dirty ones are written back first); it changes no file.
Pages another running process has mapped stay cached (the kernel cannot drop them), so the drop
is best effort.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Dropped:
    files: int
    bytes: int
    roots: tuple[str, ...]


def library_roots() -> tuple[str, ...]:
    """The running environment's site-packages and the Python installation's lib directory
    (standard library extension modules, libpython)."""
    paths = sysconfig.get_paths()
    candidates = [paths.get("platlib"), paths.get("purelib"), paths.get("stdlib"),
                  sysconfig.get_config_var("LIBDIR")]
    real = sorted({os.path.realpath(c) for c in candidates if c and os.path.isdir(c)})
    # a directory inside another one is walked with it
    return tuple(r for r in real if not any(r.startswith(o + os.sep) for o in real))


def _is_shared_library(name: str) -> bool:
    return name.endswith(".so") or ".so." in name


def drop_library_cache(roots: tuple[str, ...] | None = None) -> Dropped:
    """posix_fadvise(DONTNEED) on every shared library (``*.so``, ``*.so.N``) under ``roots``
    (default: :func:`library_roots`). Files that cannot be opened are skipped."""
    roots = library_roots() if roots is None else roots
    files = total = 0
    if not hasattr(os, "posix_fadvise"):
        return Dropped(0, 0, roots)
    seen: set[tuple[int, int]] = set()
    for root in roots:
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                if not _is_shared_library(name):
                    continue
                path = Path(dirpath) / name
                try:
                    fd = os.open(path, os.O_RDONLY)
                except OSError:
                    continue
                try:
                    st = os.fstat(fd)
                    if (st.st_dev, st.st_ino) in seen:
                        continue  # a symlink to a library already dropped
                    seen.add((st.st_dev, st.st_ino))
                    # dirty pages (a library installed seconds ago) are not dropped: write
                    # them back first; nothing to do, and quick, for an installed library
                    os.fdatasync(fd)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    files += 1
                    total += st.st_size
                except OSError:
                    pass
                finally:
                    os.close(fd)
    return Dropped(files, total, roots)


if __name__ == "__main__":
    dropped = drop_library_cache()
    print(f"dropped {dropped.files} libraries ({dropped.bytes / 2**20:.0f} MiB) from the page "
          f"cache under {', '.join(dropped.roots)}", file=sys.stderr)
