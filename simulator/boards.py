"""The hardware of a simulated device, as its agent's health sampler reads it.

A thousand agents in one process would otherwise all report that process's /proc: one resident
size, one CPU time, one disk. Each :class:`SimulatedBoard` gives its device plausible values of
its own (seeded by the device id, with a little noise per sample), and the scenario faults are
trends on them: a board heating up to a temperature (throttled from 80 degC, as a Pi's firmware
does), a memory leak of so many MiB a minute, a disk filling to so much free space. Readings
are what :class:`~edge_agent.health.sources.HealthSources` returns on a Raspberry Pi 4.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable

from edgewise_wire.health import (
    SOFT_TEMP_LIMIT_NOW,
    SOFT_TEMP_LIMIT_SEEN,
    THROTTLED_NOW,
    THROTTLED_SEEN,
)

MIB = 1024 * 1024
THROTTLE_AT_C = 80.0  # where a Pi's firmware starts to cap the clock


def _ramp(start: float, end: float, since: float, over_s: float, now: float) -> float:
    if over_s <= 0 or now - since >= over_s:
        return end
    return start + (end - start) * (now - since) / over_s


class SimulatedBoard:
    def __init__(self, device_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        rng = random.Random(device_id)
        self.clock = clock
        self.rng = rng
        self.problems: Counter[str] = Counter()
        self.base_rss = rng.uniform(52, 60) * MIB
        self.base_temp = rng.uniform(45, 55)
        self.mem_total = 4096 * MIB
        self.disk_total = 29.7 * 1024 * MIB  # a 32 GB SD card
        self.base_free = rng.uniform(18, 24) * 1024 * MIB
        self.booted = clock() - rng.uniform(3600, 30 * 86400)
        self.cpu_s = rng.uniform(10, 100)
        self.ever_throttled = False
        self._heat: tuple[float, float, float, float] | None = None  # since, from, to, over
        self._leak: tuple[float, float] | None = None  # since, bytes per second
        self._fill: tuple[float, float, float, float] | None = None  # since, from, to, over

    # -- faults ------------------------------------------------------------------------------

    def heat(self, temp_c: float, ramp_s: float) -> None:
        now = self.clock()
        self._heat = (now, self.temperature(now), temp_c, ramp_s)

    def leak(self, mib_per_min: float) -> None:
        self._leak = (self.clock(), mib_per_min * MIB / 60.0)

    def fill_disk(self, free_mib: float, ramp_s: float) -> None:
        now = self.clock()
        self._fill = (now, self.disk_free(now), free_mib * MIB, ramp_s)

    def heal(self) -> None:
        """Cooled, the leak fixed (memory back to where it started), the disk cleaned up."""
        self._heat = self._leak = self._fill = None

    # -- what the sampler reads ----------------------------------------------------------------

    def temperature(self, now: float) -> float:
        if self._heat is None:
            return self.base_temp
        since, start, end, over = self._heat
        return _ramp(start, end, since, over, now)

    def rss(self, now: float) -> float:
        if self._leak is None:
            return self.base_rss
        since, rate = self._leak
        return self.base_rss + rate * (now - since)

    def disk_free(self, now: float) -> float:
        if self._fill is None:
            return self.base_free
        since, start, end, over = self._fill
        return _ramp(start, end, since, over, now)

    def read(self) -> dict[str, float]:
        now = self.clock()
        noise = self.rng.uniform
        self.cpu_s += noise(0.001, 0.02)
        temp = self.temperature(now) + noise(-0.5, 0.5)
        throttled = 0
        if temp >= THROTTLE_AT_C:
            self.ever_throttled = True
            throttled = THROTTLED_NOW | SOFT_TEMP_LIMIT_NOW
        if self.ever_throttled:
            throttled |= THROTTLED_SEEN | SOFT_TEMP_LIMIT_SEEN
        return {
            "cpu_s": self.cpu_s,
            "rss_bytes": self.rss(now) + noise(-64, 64) * 1024,
            "mem_total_bytes": self.mem_total,
            "mem_available_bytes": self.mem_total * noise(0.55, 0.6) - self.rss(now),
            "load1": noise(0.1, 0.6),
            "uptime_s": now - self.booted,
            "temp_c": round(temp, 1),
            "throttled": throttled,
            "disk_free_bytes": max(0.0, self.disk_free(now) - noise(0, 4) * MIB),
            "disk_total_bytes": self.disk_total,
        }
