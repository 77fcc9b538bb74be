"""Sequential tests of a model's measured quality against its reference, on delayed labels.

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

:class:`MeanShiftDetector` (regression). The same question for the mean of the absolute error
(MAE) or of the signed error (bias), from a window's sums ``n``, ``sum x``, ``sum x^2``. Its
e-value per update is Gaussian: ``exp(eta z - eta^2 / 2)`` for the window's
``z = (mean - mu0) / (sd / sqrt(n))``, ``eta`` in ``etas``; it relies on the central limit
theorem for the window mean, so updates are judged once they hold ``min_n`` (30) labels
(smaller windows pool). Its false-alarm rate is therefore approximate; it is measured.

Both state their false-alarm bound in every decision and are JSON-serialisable.
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
    AlarmState,
    Decision,
    EvidenceCusum,
    log_mean_exp,
    normal_quantile,
    normal_sf,
)

DEFAULT_DELTAS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
# One reference figure per test (the drift detector has one per histogram and uses 1e-3): 1%
# of model versions may have a reference more optimistic than the allowance. For them the
# null hypothesis is off by a fraction of a standard error, which a test needs hundreds of
# thousands of labels to notice; a smaller value would cost a third more labels to prove a
# 5-point loss against a reference of 5,000 labelled rows (bench/bench_detection.py).
DEFAULT_QUALITY_REFERENCE_ALPHA = 0.01
DEFAULT_ETAS = (0.5, 1.0, 2.0, 3.0)


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


@dataclass(frozen=True)
class MeanShiftSettings:
    """Settings of :class:`MeanShiftDetector` (controller names ``regression_mae_*`` and
    ``regression_bias_*``). ``tolerance`` is in units of the reference standard deviation of the
    quantity watched."""

    tolerance: float = 0.05
    alpha: float = DEFAULT_ALPHA
    reference_alpha: float = DEFAULT_QUALITY_REFERENCE_ALPHA
    etas: tuple[float, ...] = DEFAULT_ETAS
    min_n: int = 30
    clear_after: int = DEFAULT_CLEAR_AFTER

    def __post_init__(self) -> None:
        if self.tolerance < 0 or not 0 < self.alpha < 1 or not 0 < self.reference_alpha < 1:
            raise ValueError("tolerance >= 0, alpha and reference_alpha in (0, 1) are required")
        if not self.etas or not all(e > 0 for e in self.etas):
            raise ValueError("etas must be positive")
        if self.min_n < 2 or self.clear_after < 1:
            raise ValueError("min_n >= 2 and clear_after >= 1 are required")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "etas": list(self.etas)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MeanShiftSettings:
        return cls(**{**d, "etas": tuple(float(x) for x in d["etas"])})


class MeanShiftDetector:
    """Sequential test that a mean rose above (``"up"``), fell below (``"down"``) or left
    (``"both"``) its reference value, from additive sums (module docstring).

    ``reference_mean``/``reference_sd``: the quantity's mean and standard deviation on the
    converter's labelled sample (``reference_sd`` ``None``: each update uses its own sample
    standard deviation, and ``tolerance`` is relative to ``reference_mean``), ``reference_n``
    its size (``None``: its sampling error is not allowed
    for). ``name``: ``"mae"`` (feed absolute errors: sums ``n``, ``sum_abs_err``,
    ``sum_sq_err``) or ``"bias"`` (signed errors: ``n``, ``sum_err``, ``sum_sq_err``).
    """

    kind = "mean_shift"

    def __init__(self, reference_mean: float, reference_sd: float | None = None,
                 reference_n: int | None = None, settings: MeanShiftSettings | None = None, *,
                 direction: str = "up", name: str = "mae") -> None:
        if direction not in ("up", "down", "both"):
            raise ValueError("direction must be 'up', 'down' or 'both'")
        if not math.isfinite(reference_mean):
            raise ValueError("reference_mean must be finite")
        if reference_sd is not None and not (math.isfinite(reference_sd) and reference_sd > 0):
            raise ValueError("reference_sd must be positive")
        self.settings = settings or MeanShiftSettings()
        self.reference_mean = float(reference_mean)
        self.reference_sd = None if reference_sd is None else float(reference_sd)
        self.reference_n = None if reference_n is None else int(reference_n)
        self.direction = direction
        self.name = name
        s = self.settings
        if self.reference_sd is not None:
            margin = s.tolerance * self.reference_sd
            if self.reference_n:
                margin += normal_quantile(1 - s.reference_alpha) * self.reference_sd / \
                    math.sqrt(self.reference_n)
        else:
            # no spread known (an older profile: only the manifest's MAE): the tolerance is
            # taken relative to the reference value itself, and the reference's sampling error
            # cannot be allowed for
            margin = s.tolerance * abs(self.reference_mean)
        self.margin = margin
        self._signs = {"up": (1.0,), "down": (-1.0,), "both": (1.0, -1.0)}[direction]
        self._etas = np.asarray(s.etas, dtype=np.float64)
        self.cusum = EvidenceCusum(len(self._signs) * self._etas.size, s.alpha)
        self.alarm_state = AlarmState(s.clear_after)
        self.pending = [0, 0.0, 0.0]
        self.stats: dict[str, int] = {"updates": 0, "judged": 0, "labels": 0}
        self._last: dict[str, Any] = {}

    @property
    def threshold(self) -> float:
        return self.cusum.threshold

    @property
    def state(self) -> str:
        return self.alarm_state.state

    def update(self, n: int, total: float, total_sq: float) -> Decision:
        """Judge ``n`` observations with sum ``total`` and sum of squares ``total_sq``."""
        n = int(n)
        if n < 0 or not (math.isfinite(total) and math.isfinite(total_sq)) or total_sq < 0:
            raise ValueError("n >= 0 and finite sums are required")
        self.stats["updates"] += 1
        self.pending[0] += n
        self.pending[1] += float(total)
        self.pending[2] += float(total_sq)
        m = int(self.pending[0])
        if m < self.settings.min_n:
            return self._decision(False, False, -math.inf,
                                  f"{m} of {self.settings.min_n} labels pending; pooled with the"
                                  f" next windows" if m else "no labels to judge")
        mean = self.pending[1] / m
        var = max(self.pending[2] / m - mean * mean, 0.0) * m / (m - 1)
        sd = self.reference_sd if self.reference_sd is not None else math.sqrt(var)
        if not sd > 0:
            sd = max(abs(mean), 1e-12) * 1e-6 + 1e-12
        se = sd / math.sqrt(m)
        zs = []
        for sign in self._signs:
            mu0 = self.reference_mean + sign * self.margin
            zs.append(sign * (mean - mu0) / se)
        z = np.repeat(np.asarray(zs), self._etas.size)
        etas = np.tile(self._etas, len(self._signs))
        log_e = etas * z - etas * etas / 2.0
        self.cusum.add(log_e, m)
        self.stats["judged"] += 1
        self.stats["labels"] += m
        self._last = {"n": m, "mean": mean, "sd": math.sqrt(var), "z": max(zs, key=abs)}
        self.pending = [0, 0.0, 0.0]
        return self._decision(True, self.cusum.crossed(), log_mean_exp(log_e), "")

    def update_evidence(self, evidence: WindowEvidence) -> Decision:
        if self.name == "bias":
            return self.update(evidence.reg_n, evidence.sum_err, evidence.sum_sq_err)
        return self.update(evidence.reg_n, evidence.sum_abs_err, evidence.sum_sq_err)

    def _decision(self, judged: bool, alarm: bool, window_log_e: float, detail: str) -> Decision:
        score, threshold = self.cusum.score, self.threshold
        explanation: dict[str, Any] = {
            "test": "e-CUSUM of Gaussian (CLT) e-values of the window mean",
            "false_alarm_rate": f"about {self.settings.alpha:g} per label at most (CLT)",
            "metric": self.name, "direction": self.direction,
            "reference_mean": self.reference_mean, "reference_sd": self.reference_sd,
            "reference_n": self.reference_n, "allowed_margin": self.margin, **self._last}
        if math.isfinite(score):
            k = self.cusum.leader()
            explanation["leader"] = {
                "direction": "up" if self._signs[k // self._etas.size] > 0 else "down",
                "eta": float(self._etas[k % self._etas.size]),
                "log_evidence": float(self.cusum.log_c[k]),
                "run_labels": int(self.cusum.run_rows[k]),
                "run_updates": int(self.cusum.run_updates[k])}
        if alarm:
            lead = explanation["leader"]
            detail = (f"{self.name} {'above' if lead['direction'] == 'up' else 'below'} the "
                      f"reference {self.reference_mean:.4g} (margin {self.margin:.3g}): latest "
                      f"mean {self._last['mean']:.4g} over {self._last['n']} labels, evidence "
                      f"{score:.1f} >= {threshold:.1f} over {lead['run_labels']} labels")
        elif judged and not detail:
            detail = (f"{self.name} {self._last['mean']:.4g} over {self._last['n']} labels "
                      f"(reference {self.reference_mean:.4g}); no alarm")
        cleared = False
        fired = alarm and not self.alarm_state.in_alarm
        if judged:
            record = {"score": score, **explanation.get("leader", {})} if alarm else None
            cleared = self.alarm_state.step(alarm, window_log_e, record)
            if cleared:
                detail += "; alarm cleared"
        out = Decision(f"{self.name}", alarm, self.alarm_state.state, cleared, judged, score,
                       threshold, detail, explanation, fired)
        if alarm:
            self.cusum.reset()
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "settings": self.settings.to_dict(), "name": self.name,
                "direction": self.direction, "reference_mean": self.reference_mean,
                "reference_sd": self.reference_sd, "reference_n": self.reference_n,
                "cusum": self.cusum.to_dict(), "alarm": self.alarm_state.to_dict(),
                "pending": list(self.pending), "stats": dict(self.stats), "last": self._last}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MeanShiftDetector:
        if d.get("kind") != cls.kind:
            raise MonitoringError("not a mean-shift detector state")
        out = cls(float(d["reference_mean"]), d.get("reference_sd"), d.get("reference_n"),
                  MeanShiftSettings.from_dict(d["settings"]), direction=str(d["direction"]),
                  name=str(d["name"]))
        cusum = EvidenceCusum.from_dict(d["cusum"])
        if cusum.components != out.cusum.components:
            raise MonitoringError("mean-shift detector state does not match its settings")
        out.cusum = cusum
        out.alarm_state = AlarmState.from_dict(d["alarm"])
        p = d.get("pending", [0, 0.0, 0.0])
        out.pending = [int(p[0]), float(p[1]), float(p[2])]
        out.stats.update({k: int(v) for k, v in d.get("stats", {}).items()})
        out._last = dict(d.get("last", {}))
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
