"""One health window: samples added up into min/mean/max per gauge, and the cost of serving the
window's model. Pure: no I/O, no clock (times are passed in).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgewise_wire.health import GAUGES, HEALTH_KIND


class GaugeTally:
    __slots__ = ("count", "high", "low", "total")

    def __init__(self, value: float) -> None:
        self.low = self.high = self.total = value
        self.count = 1

    def add(self, value: float) -> None:
        if value < self.low:
            self.low = value
        if value > self.high:
            self.high = value
        self.total += value
        self.count += 1

    def triple(self) -> list[float]:
        # the mean is clamped: a float sum can land a hair outside [low, high]
        mean = min(max(self.total / self.count, self.low), self.high)
        return [self.low, mean, self.high]


class HealthWindow:
    """``model``/``version``: what was served during the window (None: nothing);
    ``session_bytes``: the resident memory its session added at activation, when measured."""

    def __init__(self, start_ts: float, model: str | None = None, version: int | None = None,
                 session_bytes: int | None = None) -> None:
        self.start_ts = start_ts
        self.model = model
        self.version = version
        self.session_bytes = session_bytes
        self.samples = 0
        self.gauges: dict[str, GaugeTally] = {}
        self.latest: dict[str, float] = {}  # single values: the newest reading
        self.throttled = 0  # get_throttled bits seen in any sample
        self.predictions = 0
        self.latency_ms_total = 0.0
        self.timed_cpu_s = 0.0  # CPU time of the calls that were timed
        self.timed_rows = 0  # and their rows

    def add(self, reading: Mapping[str, float]) -> None:
        """One sample: gauges are tallied, other values kept as the newest."""
        self.samples += 1
        for name, value in reading.items():
            if name in GAUGES:
                tally = self.gauges.get(name)
                if tally is None:
                    self.gauges[name] = GaugeTally(value)
                else:
                    tally.add(value)
            elif name == "throttled":
                self.throttled |= int(value)
            else:
                self.latest[name] = value

    def observe_call(self, rows: int, latency_ms: float, cpu_s: float | None = None) -> None:
        """One inference call of ``rows`` rows: the wall time it took and, when it was timed,
        the process CPU time."""
        self.predictions += rows
        self.latency_ms_total += latency_ms
        if cpu_s is not None:
            self.timed_cpu_s += cpu_s
            self.timed_rows += rows

    @property
    def cpu_s(self) -> float:
        """The process CPU time of all the window's calls, extrapolated from the timed ones
        (per row)."""
        if not self.timed_rows:
            return 0.0
        return self.timed_cpu_s * self.predictions / self.timed_rows

    def record(self, end_ts: float, *, reconnects: int, agent_started_ts: float,
               has_throttling: bool) -> dict[str, Any]:
        """The window as a ``health`` telemetry record."""
        record: dict[str, Any] = {
            "kind": HEALTH_KIND, "ts": max(end_ts, self.start_ts), "start_ts": self.start_ts,
            "samples": self.samples, "agent_started_ts": agent_started_ts,
            "reconnects": reconnects,
            "gauges": {name: tally.triple() for name, tally in self.gauges.items()},
        }
        for name in ("uptime_s", "mem_total_bytes", "disk_total_bytes"):
            if name in self.latest:
                record[name] = self.latest[name]
        if has_throttling:
            record["throttled"] = self.throttled
        if self.model is not None and self.version is not None:
            record["model"], record["version"] = self.model, self.version
            cost: dict[str, Any] = {"predictions": self.predictions, "cpu_s": self.cpu_s}
            if self.predictions:
                cost["latency_ms"] = self.latency_ms_total / self.predictions
            if self.session_bytes is not None:
                cost["session_bytes"] = self.session_bytes
            record["cost"] = cost
        return record
