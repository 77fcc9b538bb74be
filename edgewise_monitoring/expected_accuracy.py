"""The label-free accuracy estimate of a window (in the spirit of NannyML's CBPE): the sum of the
calibrated probabilities of the labels the model gave, with a confidence interval, and for a
binary model the expected confusion matrix. The calibration map is fitted at conversion time
(:mod:`edgewise_monitoring.calibration`).

What it cannot see: a change of what the labels mean (concept drift) leaves the model as
confident as before, so the estimate stays where it was; only labels reveal it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from edgewise_monitoring.sequential import normal_quantile


class ExpectedAccuracy:
    """Additive sums of calibrated correctness probabilities: ``n``, ``sum c``,
    ``sum c (1 - c)``, and for binary maps the expected confusion matrix (``tp``, ``fp``,
    ``fn``, ``tn``: sums of probabilities)."""

    __slots__ = ("binary", "fn", "fp", "n", "sum_c", "sum_var", "tn", "tp")

    def __init__(self, binary: bool = False) -> None:
        self.binary = binary
        self.n = 0
        self.sum_c = 0.0
        self.sum_var = 0.0
        self.tp = self.fp = self.fn = self.tn = 0.0

    def add(self, c: npt.ArrayLike, is_positive: npt.ArrayLike | None = None) -> None:
        """Count calibrated probabilities ``c`` (NaN skipped); ``is_positive`` per row for a
        binary map."""
        arr = np.asarray(c, dtype=np.float64).reshape(-1)
        ok = np.isfinite(arr)
        v = arr[ok]
        self.n += int(v.size)
        self.sum_c += float(v.sum())
        self.sum_var += float(np.sum(v * (1 - v)))
        if self.binary and is_positive is not None:
            pos = np.asarray(is_positive, dtype=bool).reshape(-1)[ok]
            self.tp += float(v[pos].sum())
            self.fp += float((1 - v[pos]).sum())
            self.fn += float((1 - v[~pos]).sum())
            self.tn += float(v[~pos].sum())

    def merge(self, other: ExpectedAccuracy) -> None:
        self.n += other.n
        self.sum_c += other.sum_c
        self.sum_var += other.sum_var
        self.binary = self.binary or other.binary
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.tn += other.tn

    def estimate(self, level_se: float = 0.0, confidence: float = 0.95) -> dict[str, Any] | None:
        """Expected accuracy with its interval (module docstring); ``None`` before any row."""
        if self.n == 0:
            return None
        value = self.sum_c / self.n
        z = normal_quantile(0.5 + confidence / 2)
        se = math.sqrt(self.sum_var / self.n**2 + level_se**2)
        out: dict[str, Any] = {
            "value": value, "ci_low": max(0.0, value - z * se), "ci_high": min(1.0, value + z * se),
            "confidence": confidence, "n": self.n, "is_estimate": True,
            "method": "calibrated-probabilities (CBPE)"}
        if self.binary:
            tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
            precision = tp / (tp + fp) if tp + fp > 0 else None
            recall = tp / (tp + fn) if tp + fn > 0 else None
            f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn > 0 else None
            out["confusion"] = {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
            out.update(precision=precision, recall=recall, f1=f1)
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"n": self.n, "sum_c": self.sum_c, "sum_var": self.sum_var}
        if self.binary:
            d.update(tp=self.tp, fp=self.fp, fn=self.fn, tn=self.tn)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExpectedAccuracy:
        out = cls(binary="tp" in d)
        out.n = int(d["n"])
        out.sum_c = float(d["sum_c"])
        out.sum_var = float(d["sum_var"])
        if out.binary:
            out.tp, out.fp = float(d["tp"]), float(d["fp"])
            out.fn, out.tn = float(d["fn"]), float(d["tn"])
        if out.n < 0 or not all(math.isfinite(x) for x in (out.sum_c, out.sum_var)):
            raise ValueError("expected-accuracy sums must be finite and n >= 0")
        return out

