"""Additive scores for predictions whose true label or value arrived later.

Ground truth reaches a device late and sparsely (a user corrects a prediction, a sensor confirms
an outcome), so these accumulators only ever see the (prediction, truth) pairs handed to them;
matching feedback to past predictions is the agent's job. Both are plain sums, so windows and
devices add up, and every figure is derived from the sums on demand.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import numpy.typing as npt

from edgewise_monitoring.labels import Label, as_flat_list, canonical_label, label_sort_key


class ClassificationScore:
    """A sparse confusion matrix: ``(predicted, truth) -> count``.

    Labels are canonicalised (:mod:`edgewise_monitoring.labels`) so that ``np.int64(1)``,
    ``1.0`` and ``1`` count as one class while ``"1"`` is another. In JSON the matrix is a list of
    ``[predicted, truth, count]`` triples with the labels as JSON values, never as object keys,
    so integer and string labels survive the round trip unchanged.
    """

    __slots__ = ("pairs",)

    def __init__(self) -> None:
        self.pairs: Counter[tuple[Label, Label]] = Counter()

    def update(self, predicted: Any, truth: Any) -> None:
        """Count (prediction, truth) pairs: two scalars, or two sequences of equal length."""
        p, t = as_flat_list(predicted), as_flat_list(truth)
        if len(p) != len(t):
            raise ValueError(f"{len(p)} predictions but {len(t)} true labels")
        self.pairs.update((canonical_label(a), canonical_label(b)) for a, b in zip(p, t, strict=True))

    def merge(self, other: ClassificationScore) -> None:
        """Add ``other``'s pairs (in place)."""
        self.pairs.update(other.pairs)

    @property
    def count(self) -> int:
        """Number of labelled predictions."""
        return sum(self.pairs.values())

    @property
    def correct(self) -> int:
        return sum(c for (p, t), c in self.pairs.items() if p == t)

    def labels(self) -> list[Label]:
        """Every label seen as a prediction or as a truth, in the stable order."""
        seen: set[Label] = set()
        for p, t in self.pairs:
            seen.update((p, t))
        return sorted(seen, key=label_sort_key)

    def accuracy(self) -> float | None:
        """Share of correct predictions, ``None`` before any feedback."""
        n = self.count
        return self.correct / n if n else None

    def per_class(self) -> dict[Label, dict[str, int]]:
        """True positives, false positives and false negatives of every label."""
        stats: dict[Label, dict[str, int]] = {
            lab: {"tp": 0, "fp": 0, "fn": 0} for lab in self.labels()
        }
        for (p, t), c in self.pairs.items():
            if p == t:
                stats[p]["tp"] += c
            else:
                stats[p]["fp"] += c
                stats[t]["fn"] += c
        return stats

    def macro_f1(self) -> float | None:
        """Unweighted mean of per-class F1 = 2TP / (2TP + FP + FN), ``None`` before feedback.

        The classes are those seen as a prediction or a truth, as scikit-learn's
        ``f1_score(average="macro")`` does; every such class has ``2TP + FP + FN > 0``, so no F1
        is undefined. Classes the window never saw do not count, which makes small windows look
        better than the model is on rare classes: read it alongside ``count``.
        """
        stats = self.per_class()
        if not stats:
            return None
        f1 = [2 * s["tp"] / (2 * s["tp"] + s["fp"] + s["fn"]) for s in stats.values()]
        return sum(f1) / len(f1)

    def to_dict(self) -> dict[str, Any]:
        """``{"pairs": [[predicted, truth, count], ...]}`` sorted by label order."""
        items = sorted(
            self.pairs.items(), key=lambda kv: (label_sort_key(kv[0][0]), label_sort_key(kv[0][1]))
        )
        return {"pairs": [[p, t, int(c)] for (p, t), c in items if c > 0]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassificationScore:
        out = cls()
        for entry in d.get("pairs", []):
            p, t, c = entry
            if int(c) < 0:
                raise ValueError("pair counts must be non-negative")
            out.pairs[(canonical_label(p), canonical_label(t))] += int(c)
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassificationScore):
            return NotImplemented
        return +self.pairs == +other.pairs


class RegressionScore:
    """Sums of errors (``prediction - truth``): count, absolute, squared and signed.

    MAE = sum|e| / n, RMSE = sqrt(sum e^2 / n), bias = sum e / n (positive: the model
    over-predicts). All three are ratios of sums, so they merge exactly.
    """

    __slots__ = ("n", "sum_abs_err", "sum_err", "sum_sq_err")

    def __init__(self) -> None:
        self.n: int = 0
        self.sum_abs_err: float = 0.0
        self.sum_sq_err: float = 0.0
        self.sum_err: float = 0.0

    def update(self, predicted: npt.ArrayLike, truth: npt.ArrayLike) -> None:
        """Count pairs of predicted and true values (scalars or equal-length arrays)."""
        p = np.asarray(predicted, dtype=np.float64).reshape(-1)
        t = np.asarray(truth, dtype=np.float64).reshape(-1)
        if p.size != t.size:
            raise ValueError(f"{p.size} predictions but {t.size} true values")
        err = p - t
        if not np.all(np.isfinite(err)):
            raise ValueError("predictions and true values must be finite")
        self.n += int(err.size)
        self.sum_abs_err += float(np.abs(err).sum())
        self.sum_sq_err += float(np.square(err).sum())
        self.sum_err += float(err.sum())

    def merge(self, other: RegressionScore) -> None:
        self.n += other.n
        self.sum_abs_err += other.sum_abs_err
        self.sum_sq_err += other.sum_sq_err
        self.sum_err += other.sum_err

    @property
    def count(self) -> int:
        return self.n

    def mae(self) -> float | None:
        return self.sum_abs_err / self.n if self.n else None

    def rmse(self) -> float | None:
        return math.sqrt(self.sum_sq_err / self.n) if self.n else None

    def bias(self) -> float | None:
        return self.sum_err / self.n if self.n else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "sum_abs_err": self.sum_abs_err,
            "sum_sq_err": self.sum_sq_err,
            "sum_err": self.sum_err,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegressionScore:
        out = cls()
        out.n = int(d["n"])
        out.sum_abs_err = float(d["sum_abs_err"])
        out.sum_sq_err = float(d["sum_sq_err"])
        out.sum_err = float(d.get("sum_err", 0.0))
        return out

