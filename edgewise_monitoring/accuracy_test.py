"""Sequential test of a classifier's error rate against its reference, on delayed labels.

**What they replace.** A window was bad when its accuracy fell more than 10 points below the
reference, and an alert needed three such windows: a real 5-7 point loss was never reported,
and the verdict of a window with 20 labels was mostly noise. Here the question is a
significance test, asked continuously: *do the labels seen so far prove that the error rate is
above the reference's?* A large loss is proved by a few dozen labels, a 5-point loss by a few
thousand, noise never (at most ``alpha`` false alarms per label).

:class:`ErrorRateDetector` (classification). Each label is a Bernoulli error ``x`` (0 right,
1 wrong). The null hypothesis is ``error rate <= p0`` with::

    p0 = (1 - reference_accuracy) + tolerance + z(1 - reference_alpha) * se(reference)

(``reference_alpha`` 0.01 by default: ``z`` = 2.33)

``tolerance`` (default 0: any loss the labels can prove) is the loss deemed not worth an alert,
and the last term covers the reference's own sampling error (``se = sqrt(a (1 - a) / reference_n)``; left out when the
reference size is unknown). For each alternative ``p1 = p0 + delta`` (``delta`` in
``deltas``), the likelihood ratio ``(p1/p0)^x ((1-p1)/(1-p0))^(1-x)`` has expectation at most 1
for any error rate ``<= p0``: an exact e-value, no approximation. The e-values feed the
rows-weighted e-CUSUM of :mod:`edgewise_monitoring.sequential`; a window's labels are one
update (``errors`` of ``labels``), a single label is one too (the device runs it per label,
which is how an abrupt concept change is caught within a few dozen labels). The same detector
is the *change detector on the labelled error stream*: the CUSUM forgets evidence older than the
start of its best run, so it reacts to a change late in a long stream as fast as early.

Regressors have the same question asked of their error's mean in
:mod:`edgewise_monitoring.regression_test`.

It states its false-alarm bound in every decision and are JSON-serialisable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from edgewise_monitoring.errors import MonitoringError
from edgewise_monitoring.evidence import WindowEvidence
from edgewise_monitoring.sequential import (
    DEFAULT_ALPHA,
    DEFAULT_CLEAR_AFTER,
    DEFAULT_QUALITY_REFERENCE_ALPHA,
    AlarmState,
    Decision,
    EvidenceCusum,
    log_mean_exp,
    normal_quantile,
    normal_sf,
)

DEFAULT_DELTAS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)


@dataclass(frozen=True)
class ErrorRateSettings:
    """Settings of :class:`ErrorRateDetector` (controller names ``accuracy_*``)."""

    tolerance: float = 0.0
    alpha: float = DEFAULT_ALPHA
    reference_alpha: float = DEFAULT_QUALITY_REFERENCE_ALPHA
    deltas: tuple[float, ...] = DEFAULT_DELTAS
    clear_after: int = DEFAULT_CLEAR_AFTER

    def __post_init__(self) -> None:
        if not 0 <= self.tolerance < 1:
            raise ValueError("tolerance must lie in [0, 1)")
        if not 0 < self.alpha < 1 or not 0 < self.reference_alpha < 1:
            raise ValueError("alpha and reference_alpha must lie in (0, 1)")
        if not self.deltas or not all(0 < d < 1 for d in self.deltas):
            raise ValueError("deltas must lie in (0, 1)")
        if self.clear_after < 1:
            raise ValueError("clear_after must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "deltas": list(self.deltas)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ErrorRateSettings:
        return cls(**{**d, "deltas": tuple(float(x) for x in d["deltas"])})


class ErrorRateDetector:
    """Sequential one-sided test: is the error rate above the reference's (module docstring)?

    ``reference_error`` is ``1 - reference accuracy`` (see :meth:`from_accuracy`);
    ``reference_n`` the number of labelled rows it was measured on (``None``: unknown, then its
    sampling error is not allowed for: set a larger ``tolerance``).
    """

    kind = "error_rate"

    def __init__(self, reference_error: float, reference_n: int | None = None,
                 settings: ErrorRateSettings | None = None, *, name: str = "error rate") -> None:
        if not 0.0 <= reference_error < 1.0 or not math.isfinite(reference_error):
            raise ValueError("reference_error must lie in [0, 1)")
        if reference_n is not None and reference_n < 1:
            raise ValueError("reference_n must be positive")
        self.settings = settings or ErrorRateSettings()
        self.reference_error = float(reference_error)
        self.reference_n = None if reference_n is None else int(reference_n)
        self.name = name
        s = self.settings
        slack = 0.0
        if self.reference_n is not None:
            a = self.reference_error
            slack = normal_quantile(1.0 - s.reference_alpha) * math.sqrt(
                max(a * (1 - a), 1.0 / self.reference_n) / self.reference_n)
        # a reference that made no error at all (often: measured on training data) still
        # needs a positive null rate for the likelihood ratios to exist
        self.null_error = min(max(self.reference_error + s.tolerance + slack, 1e-4), 0.999)
        p0 = self.null_error
        p1 = np.array([p for p in (p0 + d for d in s.deltas) if p < 1.0], dtype=np.float64)
        if p1.size == 0:
            p1 = np.array([0.5 * (p0 + 1.0)])
        self._p1 = p1
        self._a = np.log(p1 / p0)  # log e per wrong prediction
        self._b = np.log((1 - p1) / (1 - p0))  # log e per right prediction (negative)
        self.cusum = EvidenceCusum(p1.size, s.alpha)
        self.alarm_state = AlarmState(s.clear_after)
        self.stats: dict[str, int] = {"updates": 0, "labels": 0, "errors": 0}
        self._run_errors = np.zeros(p1.size, dtype=np.int64)

    @classmethod
    def from_accuracy(cls, reference_accuracy: float, reference_n: int | None = None,
                      settings: ErrorRateSettings | None = None) -> ErrorRateDetector:
        return cls(1.0 - float(reference_accuracy), reference_n, settings)

    @property
    def threshold(self) -> float:
        return self.cusum.threshold

    @property
    def state(self) -> str:
        return self.alarm_state.state

    def update(self, errors: int, labels: int) -> Decision:
        """Judge ``labels`` labelled predictions of which ``errors`` were wrong (a window's, or a
        pooled group's). ``labels == 0`` judges nothing."""
        errors, labels = int(errors), int(labels)
        if labels < 0 or not 0 <= errors <= labels:
            raise ValueError(f"{errors} errors among {labels} labels")
        self.stats["updates"] += 1
        if labels == 0:
            return self._decision(False, False, 0, 0, -math.inf, "no labels to judge")
        log_e = self._a * errors + self._b * (labels - errors)
        before = self.cusum.log_c >= math.log(labels)
        self.cusum.add(log_e, labels)
        self._run_errors = np.where(before, self._run_errors + errors, errors)
        self.stats["labels"] += labels
        self.stats["errors"] += errors
        alarm = self.cusum.crossed()
        return self._decision(True, alarm, errors, labels, log_mean_exp(log_e), "")

    def update_evidence(self, evidence: WindowEvidence) -> Decision:
        return self.update(evidence.errors, evidence.labels)

    def update_labels(self, wrong: npt.ArrayLike) -> list[Decision]:
        """Feed labels one at a time (0 right, 1 wrong), as the device does; equivalent to one
        :meth:`update` per label, but only alarms (and clearings) build a decision, which are
        returned with ``explanation["label_index"]``, the label's position in ``wrong``."""
        x = np.asarray(wrong, dtype=np.int64).reshape(-1).tolist()
        a, b = self._a.tolist(), self._b.tolist()
        out: list[Decision] = []
        c = self.cusum.log_c.tolist()
        rows = self.cusum.run_rows.tolist()
        ups = self.cusum.run_updates.tolist()
        errs = self._run_errors.tolist()
        k = len(c)
        log_k = math.log(k)
        threshold = self.threshold
        alarm_state = self.alarm_state
        for i, xi in enumerate(x):
            e = 1 if xi else 0
            total = 0.0
            for j in range(k):
                if c[j] >= 0.0:
                    rows[j] += 1
                    ups[j] += 1
                    errs[j] += e
                    c[j] = c[j] + (a[j] if e else b[j])
                else:
                    rows[j] = 1
                    ups[j] = 1
                    errs[j] = e
                    c[j] = a[j] if e else b[j]
                total += math.exp(min(c[j], 700.0))
            self.stats["updates"] += 1
            self.stats["labels"] += 1
            self.stats["errors"] += e
            score = math.log(total) - log_k if total > 0 else -math.inf
            window_log_e = math.log(sum(math.exp(a[j] if e else b[j]) for j in range(k)) / k)
            clears = (alarm_state.in_alarm and window_log_e <= 0
                      and alarm_state.good_streak + 1 >= alarm_state.clear_after)
            if score >= threshold or clears:
                # slow path: sync the state and let _decision record it exactly
                self.cusum.log_c[:] = c
                self.cusum.run_rows[:] = rows
                self.cusum.run_updates[:] = ups
                self._run_errors[:] = errs
                d = self._decision(True, score >= threshold, e, 1, window_log_e, "")
                out.append(replace(d, explanation={**d.explanation, "label_index": i}))
                c = self.cusum.log_c.tolist()
                rows = self.cusum.run_rows.tolist()
                ups = self.cusum.run_updates.tolist()
                errs = self._run_errors.tolist()
            else:
                alarm_state.step(False, window_log_e, None)
        self.cusum.log_c[:] = c
        self.cusum.run_rows[:] = rows
        self.cusum.run_updates[:] = ups
        self._run_errors[:] = errs
        return out

    def _decision(self, judged: bool, alarm: bool, errors: int, labels: int,
                  window_log_e: float, detail: str) -> Decision:
        score, threshold = self.cusum.score, self.threshold
        explanation: dict[str, Any] = {
            "test": "e-CUSUM of Bernoulli likelihood ratios: error rate above the reference",
            "false_alarm_rate": f"at most {self.settings.alpha:g} per label",
            "metric": self.name, "reference_error": self.reference_error,
            "reference_n": self.reference_n, "tolerance": self.settings.tolerance,
            "null_error": self.null_error, "labels": labels, "errors": errors,
            "window_error": errors / labels if labels else None,
        }
        if math.isfinite(score):
            k = self.cusum.leader()
            run_labels = int(self.cusum.run_rows[k])
            run_errors = int(self._run_errors[k])
            explanation["leader"] = {
                "alternative_error": float(self._p1[k]),
                "log_evidence": float(self.cusum.log_c[k]),
                "run_labels": run_labels, "run_errors": run_errors,
                "run_error_rate": run_errors / run_labels if run_labels else None,
                "run_updates": int(self.cusum.run_updates[k])}
        if alarm:
            lead = explanation["leader"]
            detail = (f"{self.name} {lead['run_error_rate']:.1%} over the last "
                      f"{lead['run_labels']} labels is above the reference "
                      f"{self.reference_error:.1%} (+ tolerance: at most {self.null_error:.1%}):"
                      f" evidence {score:.1f} >= {threshold:.1f}")
        elif judged and not detail:
            detail = (f"{self.name} {errors / labels:.1%} over {labels} labels; evidence "
                      f"{score:.1f} < {threshold:.1f}" if math.isfinite(score) else
                      f"{self.name} {errors / labels:.1%} over {labels} labels; no evidence")
        cleared = False
        fired = alarm and not self.alarm_state.in_alarm
        if judged:
            record = {"score": score, **explanation.get("leader", {})} if alarm else None
            cleared = self.alarm_state.step(alarm, window_log_e, record)
            if cleared:
                detail += "; alarm cleared"
        out = Decision(self.kind, alarm, self.alarm_state.state, cleared, judged, score,
                       threshold, detail, explanation, fired)
        if alarm:
            self.cusum.reset()
            self._run_errors[:] = 0
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "settings": self.settings.to_dict(), "name": self.name,
                "reference_error": self.reference_error, "reference_n": self.reference_n,
                "cusum": self.cusum.to_dict(), "run_errors": self._run_errors.tolist(),
                "alarm": self.alarm_state.to_dict(), "stats": dict(self.stats)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ErrorRateDetector:
        if d.get("kind") != cls.kind:
            raise MonitoringError("not an error-rate detector state")
        out = cls(float(d["reference_error"]), d.get("reference_n"),
                  ErrorRateSettings.from_dict(d["settings"]), name=str(d.get("name", "error rate")))
        cusum = EvidenceCusum.from_dict(d["cusum"])
        if cusum.components != out.cusum.components:
            raise MonitoringError("error-rate detector state does not match its settings")
        out.cusum = cusum
        out._run_errors[:] = [int(x) for x in d["run_errors"]]
        out.alarm_state = AlarmState.from_dict(d["alarm"])
        out.stats.update({k: int(v) for k, v in d.get("stats", {}).items()})
        return out


def binomial_lower_tail_test(correct: int, n: int, reference_accuracy: float,
                             tolerance: float = 0.0) -> float:
    """One-sided p-value (normal approximation) that an accuracy of ``correct / n`` is below
    ``reference_accuracy - tolerance``: a fixed-sample check for reports (not for alerting on
    a stream, where repeated looks would inflate its error rate; use the detectors)."""
    if n <= 0:
        return 1.0
    p = min(max(reference_accuracy - tolerance, 1e-9), 1 - 1e-9)
    z = (correct - n * p) / math.sqrt(n * p * (1 - p))
    return 1.0 - normal_sf(z)
