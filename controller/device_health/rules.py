"""The health alerts, judged from a device's recent health windows. Pure: no I/O, no clock.

Each alert says what it saw against which threshold, in words an operator can act on:

* ``disk_nearly_full``: the newest window's least free space on the data directory is under
  ``disk_free_share`` of the disk or under ``disk_free_bytes``;
* ``overheating``: the newest window's hottest reading is at or over ``temp_c``, or the board
  (a Raspberry Pi) reports it is throttled, capped or under-voltage now;
* ``memory_leak``: the agent's resident memory grows steadily: over at least ``leak_min_span_s``
  of windows of one process and one model version (a restart or a model switch starts over),
  the least-squares slope is over ``leak_bytes_per_hour`` and significant (t >= ``leak_t``),
  so one spike is not a leak;
* ``outbox_backlog``: the newest window's outbox backlog is over ``backlog_records`` and higher
  than the window before (growing, not draining);
* ``reconnect_storm``: at least ``reconnects`` broker reconnects in the last ``recent_s``;
* ``restarts``: the agent started at least ``restarts`` times in the last ``recent_s`` (windows
  with distinct process start times).

A fault that is over clears the alert at the next window (disk, heat, backlog), or once it is
older than ``recent_s`` (reconnects, restarts) or the memory stops growing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from edgewise_wire.health import describe_throttled

MIB = 1024 * 1024
KINDS = ("disk_nearly_full", "overheating", "memory_leak", "outbox_backlog", "reconnect_storm",
         "restarts")


@dataclass(frozen=True)
class HealthPoint:
    """One window as the health alerts read it."""

    device_id: str
    start: float
    end: float
    model: str | None
    version: int | None
    rss_bytes: float | None
    disk_free_bytes: float | None
    disk_total_bytes: float | None
    temp_c: float | None
    throttled: int | None
    outbox_backlog: float | None
    reconnects: int | None
    agent_started_ts: float | None


@dataclass(frozen=True)
class HealthThresholds:
    disk_free_share: float = 0.05
    disk_free_bytes: float = 200 * MIB
    temp_c: float = 80.0
    leak_min_span_s: float = 2 * 3600.0
    leak_min_windows: int = 8
    leak_bytes_per_hour: float = 1 * MIB
    leak_t: float = 4.0
    backlog_records: float = 10_000
    reconnects: int = 10
    restarts: int = 3
    recent_s: float = 3600.0
    leak_lookback_s: float = 6 * 3600.0  # how far back a leak is looked for

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HealthThresholds:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown health threshold(s) {sorted(unknown)}; known: "
                             f"{sorted(known)}")
        values = {k: v for k, v in d.items()}
        for k, v in values.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0:
                raise ValueError(f"health threshold {k} must be a number >= 0, got {v!r}")
        return cls(**values)


@dataclass(frozen=True)
class HealthAlert:
    kind: str
    device_id: str
    value: float
    threshold: float
    since: float  # the window the alert is judged on starts here
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(points: Mapping[str, Sequence[HealthPoint]], now: float,
             t: HealthThresholds = HealthThresholds()) -> list[HealthAlert]:
    """The firing alerts of every device (windows oldest first), by device then kind."""
    out: list[HealthAlert] = []
    for device_id in sorted(points):
        out.extend(device_alerts(points[device_id], now, t))
    return out


def device_alerts(windows: Sequence[HealthPoint], now: float,
                  t: HealthThresholds = HealthThresholds()) -> list[HealthAlert]:
    if not windows:
        return []
    newest = windows[-1]
    judged: Iterable[HealthAlert | None] = (
        _disk(newest, t), _heat(newest, t), _leak(windows, t), _backlog(windows, t),
        _reconnects(windows, now, t), _restarts(windows, now, t))
    return [a for a in judged if a is not None]


def _disk(w: HealthPoint, t: HealthThresholds) -> HealthAlert | None:
    if w.disk_free_bytes is None:
        return None
    free = w.disk_free_bytes
    total = w.disk_total_bytes
    share = free / total if total else None
    if free < t.disk_free_bytes or (share is not None and share < t.disk_free_share):
        of_total = f" ({share:.1%} of {total / MIB:,.0f} MiB)" if share is not None and total \
            else ""
        return HealthAlert("disk_nearly_full", w.device_id, free, t.disk_free_bytes, w.start,
                           f"{free / MIB:,.1f} MiB free on the data directory{of_total}; "
                           f"under {t.disk_free_bytes / MIB:,.0f} MiB or "
                           f"{t.disk_free_share:.0%} the outbox and model slots cannot grow")
    return None


def _heat(w: HealthPoint, t: HealthThresholds) -> HealthAlert | None:
    conditions = describe_throttled(w.throttled) if w.throttled else []
    hot = w.temp_c is not None and w.temp_c >= t.temp_c
    if not hot and not conditions:
        return None
    parts = []
    if w.temp_c is not None:
        parts.append(f"hottest reading {w.temp_c:.1f} degC (threshold {t.temp_c:.0f})")
    if conditions:
        parts.append("the board reports " + ", ".join(conditions) + " now")
    return HealthAlert("overheating", w.device_id, w.temp_c if w.temp_c is not None else 0.0,
                       t.temp_c, w.start, "; ".join(parts) +
                       ": predictions slow down while the CPU is throttled")


def _leak(windows: Sequence[HealthPoint], t: HealthThresholds) -> HealthAlert | None:
    newest = windows[-1]
    run = []
    for w in reversed(windows):  # the newest run of one process and one model version
        if (w.agent_started_ts, w.model, w.version) != (newest.agent_started_ts, newest.model,
                                                        newest.version):
            break
        if w.rss_bytes is not None:
            run.append(w)
    run.reverse()
    if len(run) < max(t.leak_min_windows, 3) or run[-1].end - run[0].end < t.leak_min_span_s:
        return None
    slope, t_stat = _slope(([w.end for w in run]), [w.rss_bytes or 0.0 for w in run])
    per_hour = slope * 3600.0
    if per_hour > t.leak_bytes_per_hour and t_stat >= t.leak_t:
        hours = (run[-1].end - run[0].end) / 3600.0
        return HealthAlert("memory_leak", newest.device_id, per_hour, t.leak_bytes_per_hour,
                           run[0].start,
                           f"resident memory grew {per_hour / MIB:.2f} MiB/h over {hours:.1f} h "
                           f"({len(run)} windows of one process and model version, t = "
                           f"{t_stat:.1f}); over {t.leak_bytes_per_hour / MIB:.2f} MiB/h it "
                           "runs out of memory in time")
    return None


def _slope(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope of ys on xs and its t statistic (inf for a perfect line)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return 0.0, 0.0
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    residual = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys, strict=True))
    se = math.sqrt(residual / (n - 2) / sxx) if n > 2 else math.inf
    if se == 0:
        return slope, math.inf if slope > 0 else 0.0
    return slope, slope / se


def _backlog(windows: Sequence[HealthPoint], t: HealthThresholds) -> HealthAlert | None:
    newest = windows[-1]
    if newest.outbox_backlog is None or newest.outbox_backlog <= t.backlog_records:
        return None
    before = windows[-2].outbox_backlog if len(windows) > 1 else None
    if before is not None and newest.outbox_backlog <= before:
        return None  # draining
    return HealthAlert("outbox_backlog", newest.device_id, newest.outbox_backlog,
                       t.backlog_records, newest.start,
                       f"{newest.outbox_backlog:,.0f} telemetry records wait in the outbox and "
                       f"the backlog grows (threshold {t.backlog_records:,.0f}): the device "
                       "sends less than it records, or its batches are not acknowledged")


def _reconnects(windows: Sequence[HealthPoint], now: float,
                t: HealthThresholds) -> HealthAlert | None:
    recent = [w for w in windows if w.end >= now - t.recent_s and w.reconnects]
    n = sum(w.reconnects or 0 for w in recent)
    if n < t.reconnects or not recent:
        return None
    return HealthAlert("reconnect_storm", recent[-1].device_id, float(n), float(t.reconnects),
                       recent[0].start,
                       f"{n} broker reconnects in the last {t.recent_s / 60:.0f} min "
                       f"(threshold {t.reconnects}): a flapping link or a broker that drops it")


def _restarts(windows: Sequence[HealthPoint], now: float,
              t: HealthThresholds) -> HealthAlert | None:
    recent = [w for w in windows if w.end >= now - t.recent_s and w.agent_started_ts]
    starts = sorted({w.agent_started_ts for w in recent if w.agent_started_ts is not None})
    # the process of the oldest window may have started long before: count starts in the range
    n = sum(1 for s in starts if s >= now - t.recent_s)
    if n < t.restarts or not recent:
        return None
    return HealthAlert("restarts", recent[-1].device_id, float(n), float(t.restarts),
                       starts[0], f"the agent started {n} times in the last "
                                  f"{t.recent_s / 60:.0f} min (threshold {t.restarts}): it "
                                  "crashes or is killed; `edgewise device logs` shows why")
