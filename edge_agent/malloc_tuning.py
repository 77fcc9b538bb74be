"""Keep glibc's heap from holding on to freed model and tensor buffers.

glibc raises its mmap threshold every time a large block allocated with mmap is freed (up to
32 MiB), so after onnxruntime loads a model and runs a few batches, later large buffers come from
the heap, and freed heap memory at the top is only returned past a trim threshold that rises with
it. The resident memory of a long-running agent then creeps up by the size of its largest
buffers. Fixing both thresholds (128 KiB) keeps large buffers in their own mappings, returned to
the system when freed: measured on the agent serving a 1 MiB model, about 12.5 MiB less at
peak in the latest run (docs/benchmarks.md; the figure moves with the machine's load). The
environment variables ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` do the same; this does it from inside the daemon so every install gets
it. Nothing happens off glibc (musl, macOS) or when the call fails.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger("edgewise.agent")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 128 * 1024


def fix_malloc_thresholds(threshold: int = THRESHOLD_BYTES) -> bool:
    """Set glibc's mmap and trim thresholds; True if both were set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, threshold))
    if not ok:
        log.debug("mallopt refused the thresholds; glibc defaults stay")
    return ok


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the system (glibc ``malloc_trim(0)``), so that the
    resident size measured next counts what is in use, not what was freed and kept: the agent
    does it before loading a model, whose session memory it measures. False off glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True
