"""Sequential tests of a regressor's errors against its reference, on delayed labels: the mean
absolute error (MAE) rising, or the mean signed error (bias) moving either way.

The same question as :mod:`edgewise_monitoring.accuracy_test` asks of a classifier's error rate, for the mean of the absolute error
(MAE) or of the signed error (bias), from a window's sums ``n``, ``sum x``, ``sum x^2``. Its
e-value per update is Gaussian: ``exp(eta z - eta^2 / 2)`` for the window's
``z = (mean - mu0) / (sd / sqrt(n))``, ``eta`` in ``etas``; it relies on the central limit
theorem for the window mean, so updates are judged once they hold ``min_n`` (30) labels
(smaller windows pool). Its false-alarm rate is therefore approximate; it is measured.

It states its false-alarm bound in every decision and is JSON-serialisable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

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
)

DEFAULT_ETAS = (0.5, 1.0, 2.0, 3.0)


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

