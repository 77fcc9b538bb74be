"""Loss, bias and segments: what delayed labels say beyond accuracy.

* :class:`ProbabilisticLoss`: log loss and Brier score of the predicted class's probability
  against whether the prediction was right (the *top-label* log loss and Brier score; for a
  binary model they equal the usual binary log loss and Brier score). Additive sums, in the
  window summary, so they merge like every other figure. They move before accuracy does when a
  model becomes less sure of its right answers or more sure of its wrong ones.
* :func:`prediction_bias`: per class, the share of predictions against the share of labels over
  the same labelled rows, with a McNemar-type test of their difference (the off-diagonal counts
  of the confusion matrix: ``FP_c`` against ``FN_c``).

Whether one segment (a device of a group, a site) is less accurate than the rest is judged on the
controller: :mod:`controller.monitoring.segments`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from edgewise_monitoring.accuracy import ClassificationScore
from edgewise_monitoring.labels import label_sort_key
from edgewise_monitoring.sequential import normal_sf

_P_CLIP = 1e-15


class ProbabilisticLoss:
    """Additive sums for the top-label log loss and Brier score (module docstring)."""

    __slots__ = ("n", "sum_brier", "sum_log_loss")

    def __init__(self) -> None:
        self.n = 0
        self.sum_log_loss = 0.0
        self.sum_brier = 0.0

    def add(self, correct: npt.ArrayLike, confidence: npt.ArrayLike) -> None:
        """``correct``: 1 when the prediction was right; ``confidence``: its probability.
        Rows with a non-finite confidence are skipped."""
        y = np.asarray(correct, dtype=np.float64).reshape(-1)
        p = np.asarray(confidence, dtype=np.float64).reshape(-1)
        if y.size != p.size:
            raise ValueError(f"{y.size} outcomes but {p.size} confidences")
        ok = np.isfinite(p)
        y, p = y[ok], np.clip(p[ok], 0.0, 1.0)
        q = np.clip(p, _P_CLIP, 1 - _P_CLIP)
        self.n += int(y.size)
        self.sum_log_loss += float(-np.sum(y * np.log(q) + (1 - y) * np.log(1 - q)))
        self.sum_brier += float(np.sum((p - y) ** 2))

    def merge(self, other: ProbabilisticLoss) -> None:
        self.n += other.n
        self.sum_log_loss += other.sum_log_loss
        self.sum_brier += other.sum_brier

    def log_loss(self) -> float | None:
        return self.sum_log_loss / self.n if self.n else None

    def brier(self) -> float | None:
        return self.sum_brier / self.n if self.n else None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "sum_log_loss": self.sum_log_loss, "sum_brier": self.sum_brier}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbabilisticLoss:
        out = cls()
        out.n = int(d["n"])
        out.sum_log_loss = float(d["sum_log_loss"])
        out.sum_brier = float(d["sum_brier"])
        if out.n < 0 or not (math.isfinite(out.sum_log_loss) and math.isfinite(out.sum_brier)):
            raise ValueError("loss sums must be finite and n >= 0")
        return out


def prediction_bias(score: ClassificationScore | Mapping[str, Any], alpha: float = 0.01,
                    min_labels: int = 30) -> dict[str, Any]:
    """Predicted class shares against label shares over the same labelled predictions.

    For class ``c``: ``difference = (FP_c - FN_c) / n``. Without bias ``FP_c`` and ``FN_c`` are
    two sides of a symmetric split of ``FP_c + FN_c`` mistakes, so ``z = (FP_c - FN_c) /
    sqrt(FP_c + FN_c)`` is about standard normal; a class is ``biased`` when its two-sided
    p-value is under ``alpha / classes`` (Bonferroni). Nothing is judged below ``min_labels``.
    """
    s = score if isinstance(score, ClassificationScore) else \
        ClassificationScore.from_dict(dict(score))
    n = s.count
    classes = []
    stats = s.per_class()
    judged = n >= min_labels and len(stats) > 0
    level = alpha / max(1, len(stats))
    for label in sorted(stats, key=label_sort_key):
        st = stats[label]
        fp, fn = st["fp"], st["fn"]
        predicted = (st["tp"] + fp) / n if n else None
        actual = (st["tp"] + fn) / n if n else None
        p_value = None
        if judged and fp + fn > 0:
            z = (fp - fn) / math.sqrt(fp + fn)
            p_value = min(1.0, 2.0 * normal_sf(abs(z)))
        classes.append({"label": label, "predicted_share": predicted, "label_share": actual,
                        "difference": (fp - fn) / n if n else None, "p_value": p_value,
                        "biased": None if not judged else bool(p_value is not None
                                                               and p_value < level)})
    return {"n": n, "judged": judged, "alpha": alpha, "classes": classes,
            "biased_classes": [c["label"] for c in classes if c["biased"]]}
