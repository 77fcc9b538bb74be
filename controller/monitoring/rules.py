"""The alert kinds, and the threshold rules that judge a window on its own: latency and silence.

Drift, accuracy, bias and concept alerts are not judged window by window: sequential tests
accumulate their evidence across windows with a stated false-alarm rate
(:mod:`controller.monitoring.watch`, turned into alert changes by
:mod:`controller.monitoring.sequential_alerts`). Latency is a service-level threshold, where a
bad window is bad whatever came before; silence is a span of time.

Pure functions of plain values (no database, no clock). A verdict is *bad*, *good* or *unknown*
(``bad is None``: not enough evidence, e.g. too few calls in the window); unknown verdicts leave
the hysteresis counters alone (:mod:`controller.monitoring.hysteresis`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class AlertKind(str, Enum):  # noqa: UP042 -- str values for JSON and the database
    DRIFT = "drift"  # inputs or predictions moved away from the reference profile
    ACCURACY = "accuracy"  # the labels prove the error rate (or a regressor's MAE) rose
    BIAS = "bias"  # a regressor's mean error moved away from the reference
    CONCEPT = "concept"  # the device's own per-label test (or ADWIN) saw the error rate rise
    SEGMENT = "segment"  # one group of devices is significantly less accurate than the rest
    LATENCY = "latency"
    SILENT = "silent"


ALERT_KINDS = tuple(k.value for k in AlertKind)
# the kinds the sequential tests decide (the others are the threshold rules below)
SEQUENTIAL_KINDS = frozenset({AlertKind.DRIFT, AlertKind.ACCURACY, AlertKind.BIAS,
                              AlertKind.CONCEPT, AlertKind.SEGMENT})


@dataclass(frozen=True)
class AlertRules:
    """Thresholds and hysteresis of the window rules. Defaults are documented in
    docs/monitoring.md.

    ``fire_after``/``clear_after``: consecutive bad (good) windows before a latency alert fires
    (clears); ``clear_after`` is also how many judged windows without an alarm clear an alert of
    a sequential test that has no state of its own (the device's per-label test, ADWIN). Latency:
    a window with at least ``latency_min_predictions`` calls is bad when its p95 exceeds
    ``latency_p95_ms``. Silent: a device not heard from for ``silent_after_s`` (fires and clears
    on the first evaluation: the time span itself is the hysteresis).
    """

    fire_after: int = 3
    clear_after: int = 3
    latency_p95_ms: float = 250.0
    latency_min_predictions: int = 20
    silent_after_s: float = 300.0

    def __post_init__(self) -> None:
        if self.fire_after < 1 or self.clear_after < 1:
            raise ValueError("fire_after and clear_after must be >= 1")
        if self.latency_min_predictions < 1:
            raise ValueError("latency_min_predictions must be >= 1")
        if self.silent_after_s <= 0 or self.latency_p95_ms <= 0:
            raise ValueError("silent_after_s and latency_p95_ms must be > 0")

    def streaks(self, kind: AlertKind) -> tuple[int, int]:
        """(fire_after, clear_after) for ``kind``."""
        return (1, 1) if kind is AlertKind.SILENT else (self.fire_after, self.clear_after)


@dataclass(frozen=True)
class WindowObservation:
    """One device's metrics window, as the controller stored it (what the window rules read)."""

    device_id: str
    model: str
    version: int
    window_start: float
    window_end: float
    predictions: int
    p95_latency_ms: float | None = None


@dataclass(frozen=True)
class DeviceSeen:
    """When the controller last heard from a device, and whether it should be talking."""

    device_id: str
    last_seen: float
    online: bool
    active_model: str | None = None
    active_version: int | None = None


@dataclass(frozen=True)
class Verdict:
    kind: AlertKind
    bad: bool | None  # None: no verdict (not enough evidence)
    value: float | None = None
    threshold: float | None = None
    detail: str = ""
    context: dict[str, Any] = field(default_factory=dict)


def judge_window(obs: WindowObservation, rules: AlertRules) -> list[Verdict]:
    """The verdicts of one window under the threshold rules (latency)."""
    window = {"window_start": obs.window_start, "window_end": obs.window_end,
              "predictions": obs.predictions}
    return [_latency(obs, rules, window)]


def _latency(obs: WindowObservation, rules: AlertRules, window: dict[str, Any]) -> Verdict:
    if obs.p95_latency_ms is None or obs.predictions < rules.latency_min_predictions:
        return Verdict(AlertKind.LATENCY, None, obs.p95_latency_ms, rules.latency_p95_ms,
                       "too few predictions in the window", window)
    bad = obs.p95_latency_ms > rules.latency_p95_ms
    detail = f"p95 latency {obs.p95_latency_ms:.3g} ms vs at most {rules.latency_p95_ms:g} ms"
    return Verdict(AlertKind.LATENCY, bad, obs.p95_latency_ms, rules.latency_p95_ms, detail,
                   window)


def judge_silence(device: DeviceSeen, now: float, rules: AlertRules) -> Verdict:
    """Bad when a device that should be talking (it runs a model, or its presence went offline)
    has not been heard from for ``silent_after_s``."""
    quiet = now - device.last_seen
    expected = device.active_model is not None or not device.online
    if quiet > rules.silent_after_s and expected:
        state = "online" if device.online else "offline"
        detail = f"nothing heard for {quiet:.0f} s (presence {state})"
        return Verdict(AlertKind.SILENT, True, quiet, rules.silent_after_s, detail,
                       {"last_seen": device.last_seen, "online": device.online})
    return Verdict(AlertKind.SILENT, False, None, rules.silent_after_s, "heard from recently")
