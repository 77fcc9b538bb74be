"""What makes a window bad: one verdict per alert kind, from one device's metrics window.

Pure functions of plain values (no database, no clock). A verdict is *bad*, *good* or
*unknown* (``bad is None``: not enough evidence, e.g. too few labels in the window); unknown
verdicts leave the hysteresis counters alone (:mod:`controller.monitoring.hysteresis`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from statistics import NormalDist
from typing import Any

from edgewise_monitoring.psi import psi


class AlertKind(str, Enum):  # noqa: UP042 -- str values for JSON and the database
    DRIFT = "drift"
    ACCURACY = "accuracy"
    LATENCY = "latency"
    SILENT = "silent"


ALERT_KINDS = tuple(k.value for k in AlertKind)


@dataclass(frozen=True)
class AlertRules:
    """Thresholds and hysteresis. Defaults are documented (and argued) in docs/monitoring.md.

    ``fire_after``/``clear_after``: consecutive bad (good) windows before an alert fires (clears).
    Accuracy: a window with at least ``accuracy_min_labels`` labelled predictions is bad when its
    accuracy is below ``reference - accuracy_max_drop`` (reference: the version's accuracy on the
    converter's labelled sample, ``parity.artifact_accuracy``) or below ``accuracy_floor``,
    whichever is higher; with neither known there is no verdict. A regressor's window is bad when
    its MAE exceeds ``regression_mae_factor`` times the reference MAE. Latency: a window with at
    least ``latency_min_predictions`` calls is bad when its p95 exceeds ``latency_p95_ms``.
    Drift: a window is bad when any feature's or the prediction's PSI exceeds its size-aware
    threshold, set so that a window *without* drift is called drifted with probability at most
    ``drift_alpha`` over all its histograms together (see :func:`familywise_drift`). Silent: a device not heard from for ``silent_after_s`` (fires and clears on the
    first evaluation: the time span itself is the hysteresis).
    """

    fire_after: int = 3
    clear_after: int = 3
    accuracy_max_drop: float = 0.10
    accuracy_floor: float | None = None
    accuracy_min_labels: int = 20
    regression_mae_factor: float = 1.5
    latency_p95_ms: float = 250.0
    latency_min_predictions: int = 20
    silent_after_s: float = 300.0
    drift_alpha: float = 0.01

    def __post_init__(self) -> None:
        if self.fire_after < 1 or self.clear_after < 1:
            raise ValueError("fire_after and clear_after must be >= 1")
        if self.accuracy_min_labels < 1 or self.latency_min_predictions < 1:
            raise ValueError("accuracy_min_labels and latency_min_predictions must be >= 1")
        if not 0 <= self.accuracy_max_drop <= 1:
            raise ValueError("accuracy_max_drop must be within [0, 1]")
        if self.accuracy_floor is not None and not 0 <= self.accuracy_floor <= 1:
            raise ValueError("accuracy_floor must be within [0, 1]")
        if not 0 < self.drift_alpha < 1:
            raise ValueError("drift_alpha must be within (0, 1)")
        if self.silent_after_s <= 0 or self.latency_p95_ms <= 0 or self.regression_mae_factor <= 0:
            raise ValueError("silent_after_s, latency_p95_ms and regression_mae_factor must be > 0")

    def streaks(self, kind: AlertKind) -> tuple[int, int]:
        """(fire_after, clear_after) for ``kind``."""
        return (1, 1) if kind is AlertKind.SILENT else (self.fire_after, self.clear_after)


@dataclass(frozen=True)
class WindowObservation:
    """One device's metrics window, as the controller stored it."""

    device_id: str
    model: str
    version: int
    task: str
    window_start: float
    window_end: float
    predictions: int
    labelled: int
    accuracy: float | None = None
    mae: float | None = None
    p95_latency_ms: float | None = None
    drift_psi: float | None = None
    drift_threshold: float | None = None
    drifted: bool | None = None
    drifted_features: tuple[str, ...] = ()
    prediction_drifted: bool = False
    reference_accuracy: float | None = None  # the version's accuracy at conversion time
    reference_mae: float | None = None


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


def accuracy_threshold(rules: AlertRules, reference: float | None) -> float | None:
    """The accuracy below which a window is bad, or None when nothing to compare with."""
    candidates = []
    if reference is not None:
        candidates.append(reference - rules.accuracy_max_drop)
    if rules.accuracy_floor is not None:
        candidates.append(rules.accuracy_floor)
    return max(candidates) if candidates else None


def judge_window(obs: WindowObservation, rules: AlertRules) -> list[Verdict]:
    """The drift, accuracy and latency verdicts of one window."""
    window = {"window_start": obs.window_start, "window_end": obs.window_end,
              "predictions": obs.predictions, "labelled": obs.labelled}
    return [_drift(obs, window), _accuracy(obs, rules, window), _latency(obs, rules, window)]


def _drift(obs: WindowObservation, window: dict[str, Any]) -> Verdict:
    if obs.drifted is None:
        return Verdict(AlertKind.DRIFT, None, obs.drift_psi, obs.drift_threshold,
                       "too few rows in the window for a drift verdict", window)
    parts = []
    if obs.drifted_features:
        parts.append("features " + ", ".join(obs.drifted_features))
    if obs.prediction_drifted:
        parts.append("the prediction distribution")
    detail = ("PSI above threshold on " + " and ".join(parts)) if obs.drifted else "no drift"
    context = {**window, "drifted_features": list(obs.drifted_features),
               "prediction_drifted": obs.prediction_drifted}
    return Verdict(AlertKind.DRIFT, obs.drifted, obs.drift_psi, obs.drift_threshold, detail,
                   context)


def _accuracy(obs: WindowObservation, rules: AlertRules, window: dict[str, Any]) -> Verdict:
    if obs.task == "regression":
        if obs.mae is None or obs.labelled < rules.accuracy_min_labels or \
                obs.reference_mae is None:
            return Verdict(AlertKind.ACCURACY, None, obs.mae, None,
                           "not enough labels or no reference MAE", window)
        ceiling = obs.reference_mae * rules.regression_mae_factor
        detail = (f"MAE {obs.mae:.4g} over {obs.labelled} labels vs at most {ceiling:.4g} "
                  f"({rules.regression_mae_factor}x the reference {obs.reference_mae:.4g})")
        return Verdict(AlertKind.ACCURACY, obs.mae > ceiling, obs.mae, ceiling, detail,
                       {**window, "reference_mae": obs.reference_mae, "metric": "mae"})
    threshold = accuracy_threshold(rules, obs.reference_accuracy)
    if obs.accuracy is None or obs.labelled < rules.accuracy_min_labels or threshold is None:
        reason = ("no reference accuracy and no accuracy_floor configured" if threshold is None
                  else f"{obs.labelled} labels, fewer than {rules.accuracy_min_labels}")
        return Verdict(AlertKind.ACCURACY, None, obs.accuracy, threshold, reason, window)
    bad = obs.accuracy < threshold
    detail = f"accuracy {obs.accuracy:.1%} over {obs.labelled} labels vs at least {threshold:.1%}"
    if obs.reference_accuracy is not None:
        detail += f" (reference {obs.reference_accuracy:.1%})"
    return Verdict(AlertKind.ACCURACY, bad, obs.accuracy, threshold, detail,
                   {**window, "reference_accuracy": obs.reference_accuracy,
                    "metric": "accuracy"})


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


# -- drift across many histograms ------------------------------------------------------------------

@dataclass(frozen=True)
class Histogram:
    """One histogram of a window against its reference: a feature or the prediction."""

    name: str
    expected: Sequence[float]  # reference proportions per bin
    counts: Sequence[int]  # the window's counts per bin, then the "other" bucket


@dataclass(frozen=True)
class DriftFinding:
    drifted: bool | None  # None: no histogram had enough rows for a verdict
    worst_psi: float | None
    worst_threshold: float | None
    names: tuple[str, ...]  # the histograms over their threshold


def chi2_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile of a chi-square with ``dof`` degrees of freedom (Wilson-Hilferty;
    within 1% of the exact value for dof >= 3 and p up to 1 - 1e-6)."""
    z = NormalDist().inv_cdf(p)
    k = max(dof, 1)
    return float(k * max(0.0, 1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3)


def familywise_drift(histograms: Sequence[Histogram], reference_n: int, *, alpha: float,
                     base: float, eps: float, min_rows_per_bin: int) -> DriftFinding:
    """Is a window drifted, with a false-alarm rate of at most ``alpha`` for the whole window?

    Without drift ``PSI * (1/n + 1/m)**-1`` is about chi-square with ``bins - 1`` degrees of
    freedom (:mod:`edgewise_monitoring.psi`). The device's own verdicts hold each histogram
    at its 99th percentile (2.5 x the noise floor): a model with k features then raises a false
    verdict in about k% of its windows, 47% for 64 features. Here each of the k histograms
    judged is held at its ``1 - alpha/k`` quantile (Bonferroni), so the window as a whole
    errs with probability at most ``alpha``; the base threshold (``base``, 0.1) still applies
    to large windows, whose noise is far below it. Histograms with fewer than
    ``min_rows_per_bin`` rows per reference bin are not judged.
    """
    judged = []
    for h in histograms:
        n = int(sum(h.counts))
        bins = max(1, len(h.expected))
        if n > 0 and reference_n > 0 and n >= min_rows_per_bin * bins:
            judged.append((h, n, bins))
    if not judged:
        return DriftFinding(None, None, None, ())
    level = 1.0 - alpha / len(judged)
    worst: tuple[float, float] | None = None
    names = []
    for h, n, bins in judged:
        value = psi(h.expected, h.counts, eps)
        threshold = max(base, chi2_quantile(level, bins - 1) * (1.0 / n + 1.0 / reference_n))
        if value > threshold:
            names.append(h.name)
        if worst is None or value / threshold > worst[0] / worst[1]:
            worst = (value, threshold)
    assert worst is not None
    return DriftFinding(bool(names), worst[0], worst[1], tuple(names))
