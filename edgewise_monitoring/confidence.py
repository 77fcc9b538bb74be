"""A label-free accuracy ESTIMATE from the model's own confidence.

Labels arrive late or never, but every prediction of a classifier comes with class
probabilities. For a *calibrated* model, the probability of the predicted class is the chance
that the prediction is right, so the mean of the max-probabilities over a window estimates the
window's accuracy: the "average confidence" (AC) baseline that Guillory et al. 2021 (DoC) and
Garg et al. 2022 (ATC) refine. When the inputs drift away from the training data, the estimate follows the
model's confidence, which is the point: a drop flags trouble before any label arrives.

**It is an estimate, not a measurement.** It is only as good as the model's calibration, and
calibration itself can degrade under drift (models often stay over-confident on unfamiliar
inputs), so a steady estimate does not prove a steady accuracy. Report it as an estimate and
prefer measured accuracy whenever feedback exists.

**Calibration check.** At conversion time the converter has a labelled sample: the mean
max-probability on it minus the accuracy on it is the model's calibration gap (positive:
over-confident). Its negation, ``accuracy - mean_confidence``, is the ``calibration_offset``
added to the device's mean confidence. A gap of a few points is normal for boosted trees and
neural nets; a large one means the estimate should not be trusted at all.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from edgewise_monitoring.histogram import BinnedCounts

#: Ten confidence bins of width 0.1 (inner cut points 0.1 .. 0.9).
CONFIDENCE_EDGES: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 10))


class ConfidenceEstimate:
    """Additive sum and count of max-probabilities, with a coarse histogram of them."""

    __slots__ = ("count", "histogram", "sum")

    def __init__(self) -> None:
        self.sum: float = 0.0
        self.count: int = 0
        self.histogram = BinnedCounts.numeric(CONFIDENCE_EDGES)

    def add(self, max_probs: npt.ArrayLike) -> None:
        """Count a batch of confidences.

        ``max_probs`` holds the probability of the predicted class per row, or the full
        (rows x classes) probability matrix, of which the row maximum is taken. NaN values are
        counted in the histogram's ``other`` bucket and left out of the mean.
        """
        p = np.asarray(max_probs, dtype=np.float64)
        if p.size == 1:  # one prediction: plain Python is several times cheaper
            value = float(p.reshape(-1)[0])
            self.histogram.add(value)
            if math.isfinite(value):
                self.count += 1
                self.sum += value
            return
        if p.ndim == 2:
            p = p.max(axis=1)
        p = p.reshape(-1)
        if p.size == 0:
            return
        self.histogram.add(p)
        finite = p[np.isfinite(p)]
        self.count += int(finite.size)
        self.sum += float(finite.sum())

    def merge(self, other: ConfidenceEstimate) -> None:
        self.sum += other.sum
        self.count += other.count
        self.histogram.merge(other.histogram)

    @property
    def mean_confidence(self) -> float | None:
        return self.sum / self.count if self.count else None

    def estimated_accuracy(self, calibration_offset: float = 0.0) -> float | None:
        """ESTIMATED accuracy: mean max-probability plus the calibration offset, clipped to [0, 1].

        ``None`` before any prediction. Valid only for a calibrated model (module docstring).
        """
        mean = self.mean_confidence
        if mean is None:
            return None
        return min(1.0, max(0.0, mean + calibration_offset))

    def to_dict(self) -> dict[str, Any]:
        h = self.histogram
        return {"sum": self.sum, "count": self.count, "counts": [int(c) for c in h.counts],
                "other": h.other}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConfidenceEstimate:
        out = cls()
        out.sum = float(d["sum"])
        out.count = int(d["count"])
        out.histogram.load_counts(d["counts"], int(d.get("other", 0)))
        return out
