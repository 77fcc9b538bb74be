"""Pure parsers of the /proc and /sys files the health sampler reads.

Each takes the file's text and returns the value, or None when the text is not what the kernel
writes (a board without the file is handled by the caller: the reading is absent). No I/O.
"""

from __future__ import annotations

import math


def rss_bytes_from_statm(text: str, page_size: int) -> int | None:
    """Resident set size from ``/proc/<pid>/statm`` (second field, in pages)."""
    parts = text.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    return int(parts[1]) * page_size


def meminfo_bytes(text: str, key: str) -> int | None:
    """A ``/proc/meminfo`` line's value in bytes (``MemAvailable:  123456 kB``)."""
    prefix = key + ":"
    for line in text.splitlines():
        if line.startswith(prefix):
            parts = line[len(prefix):].split()
            if not parts or not parts[0].isdigit():
                return None
            unit = parts[1] if len(parts) > 1 else ""
            return int(parts[0]) * (1024 if unit == "kB" else 1)
    return None


def first_float(text: str) -> float | None:
    """The first field of ``/proc/uptime`` or ``/proc/loadavg``."""
    parts = text.split()
    if not parts:
        return None
    try:
        value = float(parts[0])
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def millidegrees(text: str) -> float | None:
    """A thermal zone's ``temp`` (millidegrees Celsius) in degrees; None for garbage."""
    text = text.strip()
    try:
        value = int(text)
    except ValueError:
        return None
    return value / 1000.0


def throttled_bits(text: str) -> int | None:
    """The Raspberry Pi firmware's ``get_throttled`` value (``0x50005``, ``throttled=0x0``
    as vcgencmd prints it, or decimal as the sysfs file holds it)."""
    text = text.strip()
    if text.startswith("throttled="):
        text = text[len("throttled="):]
    try:
        value = int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return None
    return value if 0 <= value < 2**32 else None
