"""A calibrated, label-free estimate of accuracy (in the spirit of NannyML's CBPE).

**Why.** The mean of a model's max-probabilities estimates its accuracy only if the model is
calibrated, and most are not: boosted trees and neural networks are over-confident, so the
"average confidence" read 0.96 in every window whatever happened. Calibration fixes the
scale: at conversion time a map ``f`` from the model's score to the observed frequency of being
right is fitted on a held-out part of the labelled sample and shipped in the reference profile.
On the device each prediction then carries ``c_i = f(score_i)``, the probability that it is
right, and a window's **expected accuracy** is ``mean(c_i)``, with no label at all.

**Binary models** get a map of the positive-class probability, ``f(p) = P(y = positive | p)``,
and with it the *expected confusion matrix*: a predicted positive adds ``f(p)`` to the expected
true positives and ``1 - f(p)`` to the false positives, a predicted negative ``f(p)`` to the
false negatives and ``1 - f(p)`` to the true negatives; expected precision, recall and F1 follow.
**Multiclass models** get a top-label map, ``f(s) = P(prediction right | max-probability s)``.
The device only needs the predicted label and its probability (for a binary model the positive
class probability is ``s`` or ``1 - s``), which the agent already hands to the window.

**Its confidence interval** has two parts, added in quadrature: how much the realised accuracy
of ``n`` predictions varies around its expectation (``sqrt(sum c (1 - c)) / n``: the variance
of a sum of independent Bernoullis), and how well the map's level is known
(``level_se = sqrt(a (1 - a) / n_fit)``, from the rows it was fitted on). The first shrinks with
the window, the second does not: a map fitted on 500 rows cannot promise better than about ±3
points at 95%.

**Its documented limit: it cannot see concept drift.** The estimate assumes that ``P(y | x)``
is what it was at conversion, and only the inputs move (covariate shift): then it follows the
accuracy (measured within 2 points in ``bench/bench_detection.py``). When the relation between
inputs and labels changes (concept drift, label shift), the model is as confident as before and
the estimate does not move; only labels show it (:mod:`edgewise_monitoring.accuracy_test`).

Fitting (:func:`fit_calibration`) is numpy only: isotonic regression by pool-adjacent-violators
when there are enough rows (``isotonic_min_rows``, 500), Platt scaling (a logistic regression on
the score's logit) below. Applying a map is one ``np.interp`` (or one sigmoid) per batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edgewise_monitoring.errors import ProfileError
from edgewise_monitoring.labels import Label, canonical_label

METHODS = ("isotonic", "platt")
TARGETS = ("positive_class", "top_label")
MAX_KNOTS = 64
ISOTONIC_MIN_ROWS = 500
MIN_ROWS = 100
_CLIP = 1e-6


class CalibrationMap:
    """A monotone map from a model score to a probability, as shipped in the reference profile.

    ``target`` ``"positive_class"`` (binary: the score is the positive class's probability and
    ``positive_label`` names that class) or ``"top_label"`` (the score is the max-probability and
    the result the probability that the prediction is right). ``method`` ``"isotonic"`` (knots
    ``x``/``y``, linear in between, flat beyond) or ``"platt"`` (``sigmoid(a logit(s) + b)``).
    """

    __slots__ = ("a", "b", "level_se", "method", "n_fit", "positive_label", "target", "x", "y")

    def __init__(self, method: str, target: str, *, x: npt.ArrayLike = (),
                 y: npt.ArrayLike = (), a: float = 1.0, b: float = 0.0,
                 positive_label: Label | None = None, n_fit: int = 0,
                 level_se: float = 0.0) -> None:
        if method not in METHODS or target not in TARGETS:
            raise ValueError(f"method in {METHODS}, target in {TARGETS}")
        if target == "positive_class" and positive_label is None:
            raise ValueError("a positive-class map needs its positive_label")
        self.method, self.target = method, target
        self.x = np.asarray(x, dtype=np.float64).reshape(-1)
        self.y = np.asarray(y, dtype=np.float64).reshape(-1)
        if method == "isotonic":
            if self.x.size == 0 or self.x.size != self.y.size:
                raise ValueError("an isotonic map needs as many y as x knots (at least one)")
            if not (np.isfinite(self.x).all() and np.isfinite(self.y).all()):
                raise ValueError("knots must be finite")
            if np.any(np.diff(self.x) < 0) or np.any(np.diff(self.y) < -1e-12):
                raise ValueError("knots must be ascending in x and non-decreasing in y")
            if (self.y < 0).any() or (self.y > 1).any():
                raise ValueError("calibrated probabilities must lie in [0, 1]")
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError("Platt coefficients must be finite")
        self.a, self.b = float(a), float(b)
        self.positive_label = None if positive_label is None else canonical_label(positive_label)
        self.n_fit = int(n_fit)
        self.level_se = float(level_se)

    def apply(self, scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Calibrated probabilities of ``scores`` (NaN stays NaN)."""
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if self.method == "isotonic":
            out = np.interp(s, self.x, self.y)
        else:
            out = _sigmoid(self.a * _logit(s) + self.b)
        out[np.isnan(s)] = np.nan
        return out

    def correct_probability(self, predictions: npt.ArrayLike, max_probs: npt.ArrayLike
                            ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_] | None]:
        """Per prediction, the calibrated probability that it is right; and for a binary map
        whether each prediction is the positive class (``None`` for a top-label map)."""
        s = np.asarray(max_probs, dtype=np.float64).reshape(-1)
        if self.target == "top_label":
            return self.apply(s), None
        pred = np.asarray(predictions).reshape(-1)
        if pred.size != s.size:
            raise ValueError(f"{pred.size} predictions but {s.size} probabilities")
        is_pos = _equals(pred, self.positive_label)
        p_pos = np.where(is_pos, s, 1.0 - s)
        f = self.apply(p_pos)
        return np.where(is_pos, f, 1.0 - f), is_pos

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"method": self.method, "target": self.target}
        if self.target == "positive_class":
            d["positive_label"] = self.positive_label
        if self.method == "isotonic":
            d["x"] = [float(v) for v in self.x]
            d["y"] = [float(v) for v in self.y]
        else:
            d["a"], d["b"] = self.a, self.b
        d["n_fit"] = self.n_fit
        d["level_se"] = self.level_se
        return d

    @classmethod
    def from_dict(cls, d: Any) -> CalibrationMap:
        """Parse a profile's ``calibration`` block; :class:`ProfileError` when malformed."""
        if not isinstance(d, Mapping):
            raise ProfileError("profile.calibration must be an object")
        try:
            return cls(str(d.get("method")), str(d.get("target")), x=d.get("x", ()),
                       y=d.get("y", ()), a=float(d.get("a", 1.0)), b=float(d.get("b", 0.0)),
                       positive_label=d.get("positive_label"), n_fit=int(d.get("n_fit", 0)),
                       level_se=float(d.get("level_se", 0.0)))
        except (TypeError, ValueError) as exc:
            raise ProfileError(f"profile.calibration: {exc}") from exc


def _equals(values: np.ndarray, label: Label | None) -> npt.NDArray[np.bool_]:
    if values.dtype.kind in "biuf" and isinstance(label, (int, float)):
        return np.asarray(values == label)
    if values.dtype.kind == "U" and isinstance(label, str):
        return np.asarray(values == label)
    out = np.zeros(values.size, dtype=bool)
    for i, v in enumerate(values.tolist()):
        try:
            out[i] = canonical_label(v) == label
        except (TypeError, ValueError):
            out[i] = False
    return out


def _sigmoid(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)))


def _logit(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    q = np.clip(p, _CLIP, 1 - _CLIP)
    return np.log(q / (1 - q))


# -- fitting -----------------------------------------------------------------------------------

def fit_isotonic(scores: npt.ArrayLike, outcomes: npt.ArrayLike, *, max_knots: int = MAX_KNOTS
                 ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Isotonic (non-decreasing) regression of 0/1 ``outcomes`` on ``scores`` by pool-adjacent-
    violators; returns at most ``max_knots`` knots (weighted block means, merged in groups of
    about equal weight so the map stays monotone)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    o = np.asarray(outcomes, dtype=np.float64).reshape(-1)
    keep = np.isfinite(s)
    s, o = s[keep], o[keep]
    if s.size == 0:
        raise ValueError("no finite scores to fit")
    order = np.argsort(s, kind="stable")
    s, o = s[order], o[order]
    # one block per distinct score first
    uniq, start = np.unique(s, return_index=True)
    w = np.diff(np.append(start, s.size)).astype(np.float64)
    ysum = np.add.reduceat(o, start)
    xs = uniq * w
    blocks_w: list[float] = []
    blocks_y: list[float] = []
    blocks_x: list[float] = []
    for wi, yi, xi in zip(w.tolist(), ysum.tolist(), xs.tolist(), strict=True):
        blocks_w.append(wi)
        blocks_y.append(yi)
        blocks_x.append(xi)
        while len(blocks_w) > 1 and blocks_y[-2] / blocks_w[-2] > blocks_y[-1] / blocks_w[-1]:
            wl, yl, xl = blocks_w.pop(), blocks_y.pop(), blocks_x.pop()
            blocks_w[-1] += wl
            blocks_y[-1] += yl
            blocks_x[-1] += xl
    bw = np.asarray(blocks_w)
    by = np.asarray(blocks_y)
    bx = np.asarray(blocks_x)
    if bw.size > max_knots:
        cum = np.cumsum(bw) / bw.sum()
        group = np.minimum((cum * max_knots - 1e-9).astype(np.intp), max_knots - 1)
        gw = np.bincount(group, weights=bw)
        gy = np.bincount(group, weights=by)
        gx = np.bincount(group, weights=bx)
        nz = gw > 0
        bw, by, bx = gw[nz], gy[nz], gx[nz]
    x = bx / bw
    y = by / bw
    y = np.maximum.accumulate(y)  # merged groups of a monotone sequence stay monotone; rounding
    return x, y


def fit_platt(scores: npt.ArrayLike, outcomes: npt.ArrayLike, *, iterations: int = 50
              ) -> tuple[float, float]:
    """Platt scaling: ``P(outcome) = sigmoid(a logit(score) + b)`` by Newton's method, with
    Platt's smoothed targets (``(N+ + 1)/(N+ + 2)`` and ``1/(N- + 2)``) against over-fitting."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    o = np.asarray(outcomes, dtype=np.float64).reshape(-1)
    keep = np.isfinite(s)
    x, o = _logit(s[keep]), o[keep]
    if x.size == 0:
        raise ValueError("no finite scores to fit")
    pos = float(o.sum())
    neg = float(o.size - pos)
    t = np.where(o > 0.5, (pos + 1) / (pos + 2), 1 / (neg + 2))
    a, b = 1.0, 0.0
    for _ in range(iterations):
        p = _sigmoid(a * x + b)
        g = np.array([np.sum((p - t) * x), np.sum(p - t)])
        w = p * (1 - p) + 1e-12
        h = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        h += np.eye(2) * 1e-9
        step = np.linalg.solve(h, g)
        a, b = a - float(step[0]), b - float(step[1])
        if float(np.abs(step).max()) < 1e-10:
            break
    return a, b


def fit_calibration(predictions: npt.ArrayLike, probabilities: npt.ArrayLike,
                    labels: npt.ArrayLike, class_labels: Sequence[Any] | None = None, *,
                    method: str = "auto", holdout: float = 0.5, seed: int = 0,
                    min_rows: int = MIN_ROWS, isotonic_min_rows: int = ISOTONIC_MIN_ROWS
                    ) -> dict[str, Any] | None:
    """Fit a calibration map on part of a labelled sample and check it on the rest.

    ``predictions``: the model's labels; ``probabilities``: its (rows x classes) probability
    matrix in ``class_labels`` order, or the max-probability per row; ``labels``: the truth.
    A random ``1 - holdout`` share (seeded) fits the map, the ``holdout`` share checks it. Returns
    the profile's ``calibration`` block (:meth:`CalibrationMap.to_dict` plus ``"holdout"``: the
    check's rows, accuracy, calibrated estimate and uncalibrated mean confidence), or ``None``
    when fewer than ``min_rows`` rows are usable.
    """
    pred = np.asarray(predictions).reshape(-1)
    truth = np.asarray(labels).reshape(-1)
    probs = np.asarray(probabilities, dtype=np.float64)
    if pred.size != truth.size:
        raise ValueError("one label per prediction")
    maxp = probs.max(axis=1) if probs.ndim == 2 else probs.reshape(-1)
    if maxp.size != pred.size:
        raise ValueError("one probability row per prediction")
    correct = np.array([_same(p, t) for p, t in zip(pred.tolist(), truth.tolist(),
                                                     strict=True)])
    usable = np.isfinite(maxp)
    if int(usable.sum()) < min_rows:
        return None
    labels_list = list(class_labels) if class_labels is not None else None
    binary = labels_list is not None and len(labels_list) == 2
    positive: Label | None = canonical_label(labels_list[1]) if binary and labels_list else None
    if binary:
        is_pos = _equals(pred, positive)
        if probs.ndim == 2 and probs.shape[1] == 2:
            score = probs[:, 1]
        else:
            score = np.where(is_pos, maxp, 1.0 - maxp)
        outcome = _equals(truth, positive).astype(np.float64)
        target = "positive_class"
    else:
        score, outcome, target = maxp, correct.astype(np.float64), "top_label"
    idx = np.flatnonzero(usable)
    rng = np.random.default_rng(seed)
    idx = idx[rng.permutation(idx.size)]
    n_check = int(round(idx.size * holdout))
    check, fit = idx[:n_check], idx[n_check:]
    if fit.size < min_rows // 2 or check.size < 1:
        return None
    chosen = method
    if method == "auto":
        chosen = "isotonic" if fit.size >= isotonic_min_rows else "platt"
    if chosen == "isotonic":
        x, y = fit_isotonic(score[fit], outcome[fit])
        lo = 0.5 / (fit.size + 1)
        cmap = CalibrationMap("isotonic", target, x=x, y=np.clip(y, lo, 1 - lo),
                              positive_label=positive, n_fit=int(fit.size))
    elif chosen == "platt":
        a, b = fit_platt(score[fit], outcome[fit])
        cmap = CalibrationMap("platt", target, a=a, b=b, positive_label=positive,
                              n_fit=int(fit.size))
    else:
        raise ValueError(f"method must be 'auto' or one of {METHODS}")
    acc_fit = float(correct[fit].mean())
    cmap.level_se = math.sqrt(max(acc_fit * (1 - acc_fit), 0.25 / fit.size) / fit.size)
    c, _ = cmap.correct_probability(pred[check], maxp[check])
    block = cmap.to_dict()
    block["holdout"] = {
        "n": int(check.size),
        "accuracy": float(correct[check].mean()),
        "estimated_accuracy": float(np.mean(c)),
        "mean_confidence": float(np.mean(maxp[check])),
        "brier_calibrated": float(np.mean((c - correct[check]) ** 2)),
        "brier_uncalibrated": float(np.mean((maxp[check] - correct[check]) ** 2)),
    }
    return block


def _same(a: Any, b: Any) -> bool:
    try:
        return canonical_label(a) == canonical_label(b)
    except (TypeError, ValueError):
        return False


# -- the window's accumulator ------------------------------------------------------------------
