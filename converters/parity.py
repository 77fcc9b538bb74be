"""Comparing a converted artifact's outputs with the source model's, as plain numpy.

No framework imports here: the converters hand in arrays, these functions return the figures
that go into the manifest's ``parity`` dict, and raise ParityError when they are not good enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from converters.errors import ParityError

TIE_MARGIN = 1e-3  # the widest gap between a row's two best classes that still counts as a tie


@dataclass(frozen=True)
class ParityFigures:
    """How closely the artifact reproduced the source on ``n`` sample rows."""

    n: int
    max_abs_diff: float
    label_agreement: float  # after the tie rule; always 1.0 for regression
    tolerance: float
    ties: int = 0  # label disagreements excused by the tie rule
    min_label_agreement: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        """The manifest's ``parity`` entries."""
        d: dict[str, Any] = {"n": self.n, "max_abs_diff": self.max_abs_diff,
                             "label_agreement": self.label_agreement, "tolerance": self.tolerance}
        if self.min_label_agreement < 1.0:
            d["min_label_agreement"] = self.min_label_agreement
        return d

    def enforce(self, hint: str = "") -> None:
        """Raise ParityError when the figures are outside the tolerance."""
        if self.max_abs_diff > self.tolerance or self.label_agreement < self.min_label_agreement:
            raise ParityError(self.max_abs_diff, self.label_agreement, self.tolerance, self.n,
                              hint=hint, min_label_agreement=self.min_label_agreement)


def classifier_parity(source_labels: np.ndarray, artifact_labels: np.ndarray,
                      source_proba: np.ndarray | None, artifact_proba: np.ndarray | None,
                      tolerance: float, min_label_agreement: float = 1.0) -> ParityFigures:
    """Label agreement and max probability difference between source and artifact.

    Exact-tie caveat: where the labels differ but the source's two highest probabilities are
    within ``tolerance`` (at most TIE_MARGIN: a loose int8 tolerance must not excuse real
    flips) of each other, float32 rounding legitimately picks the other class, so
    the row counts as agreeing. Without probabilities there is no tie rule and ``max_abs_diff``
    is 0.0 (only labels are compared). ``min_label_agreement`` below 1.0 accepts that share of
    flips (quantized artifacts).
    """
    source_labels = np.asarray(source_labels).ravel()
    artifact_labels = np.asarray(artifact_labels).ravel()
    n = source_labels.shape[0]
    agree = np.asarray(source_labels == artifact_labels, dtype=bool)
    max_abs_diff = 0.0
    ties = 0
    if source_proba is not None and artifact_proba is not None:
        source_proba = np.asarray(source_proba, dtype=np.float64)
        artifact_proba = np.asarray(artifact_proba, dtype=np.float64)
        if source_proba.shape != artifact_proba.shape:
            raise ParityError(float("inf"), float(agree.mean()), tolerance, n,
                              min_label_agreement=min_label_agreement,
                              hint=f"probability shapes differ: source {source_proba.shape}, "
                                   f"artifact {artifact_proba.shape}")
        max_abs_diff = float(np.max(np.abs(source_proba - artifact_proba)))
        if source_proba.shape[1] >= 2:
            top2 = np.sort(source_proba, axis=1)[:, -2:]
            tied = (top2[:, 1] - top2[:, 0]) < min(tolerance, TIE_MARGIN)
            ties = int(np.count_nonzero(~agree & tied))
            agree = agree | tied
    figures = ParityFigures(int(n), max_abs_diff, float(agree.mean()), float(tolerance), ties,
                            float(min_label_agreement))
    figures.enforce()
    return figures


def regressor_parity(source_values: np.ndarray, artifact_values: np.ndarray,
                     tolerance: float) -> ParityFigures:
    """Max absolute difference between source and artifact predictions (one value per row)."""
    source = np.asarray(source_values, dtype=np.float64).ravel()
    artifact = np.asarray(artifact_values, dtype=np.float64).ravel()
    if source.shape != artifact.shape:
        raise ParityError(float("inf"), 1.0, tolerance, source.shape[0],
                          hint=f"prediction counts differ: source {source.shape[0]}, "
                               f"artifact {artifact.shape[0]}")
    figures = ParityFigures(int(source.shape[0]), float(np.max(np.abs(source - artifact))), 1.0,
                            float(tolerance))
    scale = float(np.max(np.abs(source)))
    # float32 carries ~7 significant digits; large outputs cannot meet a tiny absolute tolerance.
    resolution = float(np.spacing(np.float32(scale)))
    hint = (f"Predictions reach {scale:.3g}, where float32 resolution alone is {resolution:.3g}; "
            f"consider tolerance >= {10 * resolution:.1g}." if resolution * 4 > tolerance else "")
    figures.enforce(hint)
    return figures


def quality_figures(task: str, labels: np.ndarray, source_pred: np.ndarray,
                    artifact_pred: np.ndarray) -> dict[str, float]:
    """Accuracy (classification) or MAE (regression) of source and artifact against labels."""
    labels = np.asarray(labels).ravel()
    source_pred = np.asarray(source_pred).ravel()
    artifact_pred = np.asarray(artifact_pred).ravel()
    if task == "classification":
        return {"source_accuracy": float(np.mean(source_pred == labels)),
                "artifact_accuracy": float(np.mean(artifact_pred == labels))}
    y = labels.astype(np.float64)
    return {"source_mae": float(np.mean(np.abs(source_pred.astype(np.float64) - y))),
            "artifact_mae": float(np.mean(np.abs(artifact_pred.astype(np.float64) - y)))}

