"""A fake board for device health: its own /proc and /sys files and a disk whose free space a
test sets, read by a real :class:`~edge_agent.health.sources.HealthSources`. Scenario faults
(a device heating up, a memory leak, a disk filling) are changes to these files."""

from __future__ import annotations

import os
from pathlib import Path

from edge_agent.health.sources import PI_THROTTLED, HealthSources

PAGE = 4096
MIB = 1024 * 1024


class FakeStatvfs:
    def __init__(self, free: int, total: int) -> None:
        self.f_frsize = PAGE
        self.f_bavail = free // PAGE
        self.f_blocks = total // PAGE


class FakeBoard:
    def __init__(self, root: Path, *, temp_c: float = 50.0, rss: int = 60 * MIB,
                 disk_free: int = 5 * 1024 * MIB, disk_total: int = 10 * 1024 * MIB,
                 pi: bool = True) -> None:
        self.root = root
        self.proc, self.sys = root / "proc", root / "sys"
        (self.proc / "self").mkdir(parents=True, exist_ok=True)
        (self.proc / "meminfo").write_text("MemTotal: 4000000 kB\nMemAvailable: 2000000 kB\n")
        (self.proc / "loadavg").write_text("0.10 0.10 0.10 1/100 1\n")
        (self.proc / "uptime").write_text("1000.0 1000.0\n")
        zone = self.sys / "class" / "thermal" / "thermal_zone0"
        zone.mkdir(parents=True, exist_ok=True)
        self.throttled_path = self.sys / PI_THROTTLED
        if pi:
            self.throttled_path.parent.mkdir(parents=True, exist_ok=True)
            self.set_throttled(0)
        self.set_temp(temp_c)
        self.set_rss(rss)
        self.disk_free, self.disk_total = disk_free, disk_total

    def set_temp(self, celsius: float) -> None:
        _write(self.sys / "class" / "thermal" / "thermal_zone0" / "temp",
               f"{int(celsius * 1000)}\n")

    def set_throttled(self, bits: int) -> None:
        _write(self.throttled_path, f"{bits:#x}\n")

    def set_rss(self, rss: int) -> None:
        self.rss = rss
        _write(self.proc / "self" / "statm", f"100000 {rss // PAGE} 100 1 0 1000 0\n")

    def statvfs(self, _path: str) -> os.statvfs_result:
        return FakeStatvfs(self.disk_free, self.disk_total)  # type: ignore[return-value]

    def sources(self, data_dir: Path) -> HealthSources:
        return HealthSources(data_dir, proc=self.proc, sys=self.sys, statvfs=self.statvfs,
                             page_size=PAGE, cpu_s=lambda: 1.0)


def _write(path: Path, text: str) -> None:
    # replace, not rewrite in place: a reader never sees a half-written file
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
