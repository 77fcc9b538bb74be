"""Where the health sampler's readings come from: /proc and /sys, read directly.

Everything is injectable (the roots of /proc and /sys, ``statvfs``, the process CPU clock) so a
test gives a fake tree: a thermal zone at 85 degC, a full disk, a garbage ``get_throttled``. A
file a board does not have is absent from the reading, never 0. A file that exists but cannot be
read or holds garbage is counted in :attr:`HealthSources.problems` (and its reading is absent).

Cost: one sample opens six small files and calls ``statvfs`` (``bench/bench_health.py``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from edge_agent.health.readings import (
    first_float,
    meminfo_bytes,
    millidegrees,
    rss_bytes_from_statm,
    throttled_bits,
)

# the Raspberry Pi firmware's throttling register, exposed by recent kernels
PI_THROTTLED = "devices/platform/soc/soc:firmware/get_throttled"


def process_cpu_s() -> float:
    """This process's CPU time (user + system, all threads), in seconds."""
    t = os.times()
    return t.user + t.system


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def process_rss_bytes() -> int | None:
    """This process's resident memory now (None where /proc is not there)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return rss_bytes_from_statm(f.read(), _PAGE_SIZE)
    except (OSError, UnicodeDecodeError):
        return None


class HealthSources:
    def __init__(self, data_dir: Path, *, proc: Path = Path("/proc"), sys: Path = Path("/sys"),
                 pid: str = "self",
                 statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
                 cpu_s: Callable[[], float] = process_cpu_s,
                 page_size: int | None = None) -> None:
        self.data_dir = data_dir
        self.proc = proc
        self.statvfs = statvfs
        self.cpu_s = cpu_s
        self.page_size = page_size or _PAGE_SIZE
        self.problems: Counter[str] = Counter()
        self._statm = proc / pid / "statm"
        # zones and the throttling register are found once: a board does not grow sensors
        self._zones = sorted((sys / "class" / "thermal").glob("thermal_zone*/temp"))
        throttled = sys / PI_THROTTLED
        self._throttled: Path | None = throttled if throttled.exists() else None

    def _text(self, path: Path, name: str) -> str | None:
        # os.open/os.read: cheaper than open() with its text layer, and this runs every sample
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                return os.read(fd, 4096).decode("ascii")
            finally:
                os.close(fd)
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self.problems[f"{name}: {type(exc).__name__}"] += 1
            return None

    def _parsed(self, value: float | None, text: str | None, name: str) -> float | None:
        if value is None and text is not None:
            self.problems[f"{name}: garbage"] += 1
        return value

    def read(self) -> dict[str, float]:
        """One sample: every reading this board has, by its ``edgewise_wire.health`` name, plus
        ``cpu_s`` (the process's cumulative CPU time, from which the sampler derives a rate)."""
        out: dict[str, float] = {"cpu_s": self.cpu_s()}
        text = self._text(self._statm, "statm")
        if text is not None:
            rss = self._parsed(rss_bytes_from_statm(text, self.page_size), text, "statm")
            if rss is not None:
                out["rss_bytes"] = rss
        text = self._text(self.proc / "meminfo", "meminfo")
        if text is not None:
            for key, name in (("MemAvailable", "mem_available_bytes"),
                              ("MemTotal", "mem_total_bytes")):
                value = self._parsed(meminfo_bytes(text, key), text, f"meminfo {key}")
                if value is not None:
                    out[name] = value
        for file, name in (("loadavg", "load1"), ("uptime", "uptime_s")):
            text = self._text(self.proc / file, file)
            value = self._parsed(first_float(text), text, file) if text is not None else None
            if value is not None:
                out[name] = value
        temps = []
        for zone in self._zones:
            text = self._text(zone, "thermal")
            if text is not None:
                temp = self._parsed(millidegrees(text), text, "thermal")
                if temp is not None:
                    temps.append(temp)
        if temps:
            out["temp_c"] = max(temps)
        if self._throttled is not None:
            text = self._text(self._throttled, "get_throttled")
            if text is not None:
                bits = self._parsed(throttled_bits(text), text, "get_throttled")
                if bits is not None:
                    out["throttled"] = bits
        try:
            st = self.statvfs(str(self.data_dir))
            out["disk_free_bytes"] = st.f_bavail * st.f_frsize
            out["disk_total_bytes"] = st.f_blocks * st.f_frsize
        except OSError as exc:
            self.problems[f"statvfs: {type(exc).__name__}"] += 1
        return out

