"""The ``health`` telemetry record: a device's resources over one window, and what its model cost.

The agent samples its process and its board every few seconds and summarises each window into
one record (``min``/``mean``/``max`` per gauge), written to the outbox like every other record.
The window is attributed to the model version active during it, so the controller can compare
versions on the same devices.

A record is a JSON object::

    {"kind": "health", "ts": <window end>, "start_ts": <window start>, "samples": 12,
     "agent_started_ts": <process start>, "uptime_s": 86400.0,
     "model": "iris", "version": 2,                        # absent when no model is served
     "gauges": {"rss_bytes": [min, mean, max], "temp_c": [61.0, 62.3, 64.5], ...},
     "mem_total_bytes": ..., "disk_total_bytes": ...,
     "reconnects": 0, "throttled": 0,                        # throttled: get_throttled bits OR'd
     "cost": {"session_bytes": ..., "predictions": 120, "cpu_s": 0.05, "latency_ms": 0.3}}

A gauge the board does not have (no thermal zone, no throttling register) is absent, never 0.

:func:`parse_health` is what a reader applies: a gauge that is malformed or outside its
plausible range (negative memory, 1,000 degC) is left out with a reason, and the rest of the
record is kept. Only a record without a usable window (``ts``/``start_ts``) is refused.
Standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from edgewise_wire.errors import SchemaError

HEALTH_KIND = "health"

GIB = 1024**3

# gauge name -> (lowest, highest) plausible value; outside it the gauge is left out
GAUGES: dict[str, tuple[float, float]] = {
    "rss_bytes": (0, 1024 * GIB),  # the agent process's resident memory
    "cpu_percent": (0, 100 * 1024),  # the agent process, percent of one core
    "mem_available_bytes": (0, 64 * 1024 * GIB),  # the system's MemAvailable
    "load1": (0, 100_000),  # 1-minute load average
    "disk_free_bytes": (0, 2**60),  # free to the agent on its data directory's file system
    "temp_c": (-60, 150),  # the hottest thermal zone
    "outbox_backlog": (0, 1e12),  # records waiting in the outbox
    "rtt_ms": (0, 3_600_000),  # publish to broker acknowledgement
    "acks_refused": (0, 1e12),  # telemetry acks refused (no epoch, no range, another epoch)
}

# the cost of serving the window's model, and each field's plausible range
COST_FIELDS: dict[str, tuple[float, float]] = {
    "session_bytes": (0, 1024 * GIB),  # resident memory the session added when it was loaded
    "predictions": (0, 1e15),  # rows predicted in the window
    "cpu_s": (0, 1e9),  # process CPU time spent inside the model's run() calls
    "latency_ms": (0, 3_600_000),  # mean latency per row
}

# single values and their ranges
SCALARS: dict[str, tuple[float, float]] = {
    "mem_total_bytes": (0, 64 * 1024 * GIB),
    "disk_total_bytes": (0, 2**60),
    "uptime_s": (0, 1e10),
    "agent_started_ts": (0, 1e11),
    "reconnects": (0, 1e9),
    "throttled": (0, 2**32 - 1),
    "samples": (0, 1e9),
}


@dataclass(frozen=True)
class HealthRecord:
    """A parsed ``health`` record. ``rejected`` names every field left out, with its reason."""

    ts: float
    start_ts: float
    gauges: dict[str, tuple[float, float, float]]
    scalars: dict[str, float]
    cost: dict[str, float]
    model: str | None = None
    version: int | None = None
    rejected: list[str] = field(default_factory=list)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer past float range (JSON has no limit)
        return None
    return number if math.isfinite(number) else None


def _in_range(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= value <= bounds[1]


def parse_health(record: Any) -> HealthRecord:
    """Read a ``health`` record; raise :class:`SchemaError` only when it has no usable window."""
    if not isinstance(record, dict):
        raise SchemaError("a health record must be an object")
    ts, start = _finite(record.get("ts")), _finite(record.get("start_ts"))
    if ts is None or start is None or start > ts or ts - start > 7 * 86_400:
        raise SchemaError(f"a health record needs numeric ts and start_ts with start_ts <= ts "
                          f"within a week (got start_ts={record.get('start_ts')!r}, "
                          f"ts={record.get('ts')!r})")
    rejected: list[str] = []
    gauges: dict[str, tuple[float, float, float]] = {}
    raw_gauges = record.get("gauges")
    if raw_gauges is not None and not isinstance(raw_gauges, dict):
        rejected.append("gauges: not an object")
        raw_gauges = None
    for name, value in (raw_gauges or {}).items():
        bounds = GAUGES.get(name)
        if bounds is None:
            rejected.append(f"{name}: unknown gauge")
            continue
        triple = [_finite(v) for v in value] if isinstance(value, list) and len(value) == 3 \
            else None
        if triple is None or None in triple:
            rejected.append(f"{name}: not [min, mean, max]")
            continue
        lo, mean, hi = (float(v) for v in triple if v is not None)
        if not (lo <= mean <= hi):
            rejected.append(f"{name}: min <= mean <= max does not hold")
        elif not (_in_range(lo, bounds) and _in_range(hi, bounds)):
            rejected.append(f"{name}: outside [{bounds[0]:g}, {bounds[1]:g}]")
        else:
            gauges[name] = (lo, mean, hi)
    scalars = _numbers(record, SCALARS, rejected, "")
    raw_cost = record.get("cost")
    if raw_cost is not None and not isinstance(raw_cost, dict):
        rejected.append("cost: not an object")
        raw_cost = None
    cost = _numbers(raw_cost or {}, COST_FIELDS, rejected, "cost.")
    model, version = record.get("model"), record.get("version")
    if not (isinstance(model, str) and 0 < len(model) <= 128
            and isinstance(version, int) and not isinstance(version, bool)
            and 0 <= version < 2**31):
        if model is not None or version is not None:
            rejected.append("model: needs a model name and an integer version")
        model, version = None, None
    return HealthRecord(ts, start, gauges, scalars, cost, model, version, rejected)


def _numbers(source: dict[str, Any], ranges: dict[str, tuple[float, float]],
             rejected: list[str], prefix: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, bounds in ranges.items():
        if name not in source or source[name] is None:
            continue
        value = _finite(source[name])
        if value is None:
            rejected.append(f"{prefix}{name}: not a number")
        elif not _in_range(value, bounds):
            rejected.append(f"{prefix}{name}: outside [{bounds[0]:g}, {bounds[1]:g}]")
        else:
            out[name] = value
    return out


# get_throttled bits: what is happening now (low bits) and what happened since boot (high bits)
UNDER_VOLTAGE_NOW = 1 << 0
FREQUENCY_CAPPED_NOW = 1 << 1
THROTTLED_NOW = 1 << 2
SOFT_TEMP_LIMIT_NOW = 1 << 3
UNDER_VOLTAGE_SEEN = 1 << 16
FREQUENCY_CAPPED_SEEN = 1 << 17
THROTTLED_SEEN = 1 << 18
SOFT_TEMP_LIMIT_SEEN = 1 << 19

THROTTLE_NAMES = {
    UNDER_VOLTAGE_NOW: "under-voltage",
    FREQUENCY_CAPPED_NOW: "frequency capped",
    THROTTLED_NOW: "throttled",
    SOFT_TEMP_LIMIT_NOW: "soft temperature limit",
}


def describe_throttled(bits: int) -> list[str]:
    """The conditions the low (current) bits name, in words."""
    return [name for bit, name in THROTTLE_NAMES.items() if bits & bit]
