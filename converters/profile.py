"""The reference profile: how inputs and predictions were distributed when the model shipped.

Devices bin what they see with the same cut points and compare proportions (e.g. PSI) to raise
drift alarms without sending raw data home. The profile is plain JSON so it travels inside the
manifest.

Format::

    {"n": rows, "bins": bins,
     "features": [{"name": str, "edges": [cut points], "proportions": [len(edges) + 1 floats]}],
     "prediction": {"kind": "categorical", "labels": [...], "proportions": [...]}
                 | {"kind": "numeric", "edges": [...], "proportions": [...]}}

With the sample's true labels (``labels``) the profile also carries the reference quality the
sequential accuracy tests compare with (``"quality"``: accuracy, log loss and Brier score of a
classifier; MAE, its spread, bias and error spread of a regressor), and, given class
probabilities (``scores``), a calibration map fitted on half of the labelled sample and checked
on the other half (``"calibration"``, see ``edgewise_monitoring/calibration.py``): the device's
label-free accuracy estimate applies it. Profiles without them (no labels given, older
converters) still work; the device then falls back to the uncalibrated mean confidence.

Bin convention (the device side must implement exactly this): ``edges`` are the inner cut
points, strictly ascending; a value ``v`` falls in bin ``np.searchsorted(edges, v, side="right")``,
i.e. bin ``i`` holds ``edges[i-1] <= v < edges[i]``, bin 0 everything below ``edges[0]`` and the
last bin everything from ``edges[-1]`` up. With ``edges == []`` every value is in bin 0.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from converters.errors import SampleDataError
from converters.validation import check_labels, check_sample
from edgewise_monitoring.calibration import fit_calibration

TASKS = ("classification", "regression")

log = logging.getLogger("edgewise.converters")


def build_reference_profile(sample: np.ndarray, predictions: np.ndarray,
                            feature_names: Sequence[str], task: str,
                            class_labels: Sequence[Any] | None, bins: int = 10, *,
                            labels: np.ndarray | None = None,
                            scores: np.ndarray | None = None) -> dict[str, Any]:
    """Summarise ``sample`` and the model's ``predictions`` on it as quantile-binned proportions.

    Edges are the sample's quantiles at 1/bins ... (bins-1)/bins with ties removed, and with cut
    points at the column minimum dropped (they would only make an always-empty first bin); so
    each feature has at most ``bins - 1`` edges and a constant feature has none. Predictions are
    counted per class for classification (in ``class_labels`` order when given, else sorted
    unique values) and binned like a feature for regression.

    ``labels`` (one true label per row) add the ``quality`` block; with ``scores`` too (the
    classifier's probability matrix in ``class_labels`` order, or its max-probability per row)
    the ``calibration`` block, when at least 100 labelled rows are given.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    matrix = check_sample(sample)
    if len(feature_names) != matrix.shape[1]:
        raise SampleDataError(
            f"{len(feature_names)} feature names given for {matrix.shape[1]} sample columns")
    preds = check_labels(predictions, matrix.shape[0], what="predictions")
    features = []
    for name, column in zip(feature_names, matrix.T, strict=True):
        edges = quantile_edges(column, bins)
        features.append({"name": str(name), "edges": edges,
                         "proportions": bin_proportions(column, edges)})
    prediction: dict[str, Any]
    if task == "classification":
        classes = list(class_labels) if class_labels is not None else np.unique(preds).tolist()
        counts = [int(np.count_nonzero(preds == label)) for label in classes]
        prediction = {"kind": "categorical", "labels": _plain(classes),
                      "proportions": [c / preds.shape[0] for c in counts]}
    else:
        values = check_sample(preds.reshape(-1, 1), what="predictions")[:, 0]
        edges = quantile_edges(values, bins)
        prediction = {"kind": "numeric", "edges": edges,
                      "proportions": bin_proportions(values, edges)}
    profile: dict[str, Any] = {"n": int(matrix.shape[0]), "bins": int(bins),
                               "features": features, "prediction": prediction}
    if labels is not None:
        # Monitoring extras never fail a conversion: labels that do not fit the sample leave
        # the profile without them (logged), as a conversion without labels would.
        try:
            truth = check_labels(labels, matrix.shape[0], what="labels")
            profile["quality"] = reference_quality(task, preds, truth, scores)
            if task == "classification" and scores is not None:
                probs = np.asarray(scores, dtype=np.float64)
                if probs.shape[0] == matrix.shape[0]:
                    calibration = fit_calibration(preds, probs, truth, class_labels)
                    if calibration is not None:
                        profile["calibration"] = calibration
        except (SampleDataError, ValueError) as exc:
            profile.pop("quality", None)
            log.warning("reference profile without quality figures or calibration: %s", exc)
    return profile


def reference_quality(task: str, predictions: np.ndarray, truth: np.ndarray,
                      scores: np.ndarray | None = None) -> dict[str, Any]:
    """The reference figures of the labelled sample that the device's tests compare with."""
    n = int(truth.shape[0])
    if task == "classification":
        correct = np.asarray(predictions == truth, dtype=np.float64).reshape(-1)
        out: dict[str, Any] = {"n": n, "accuracy": float(correct.mean())}
        if scores is not None:
            s = np.asarray(scores, dtype=np.float64)
            conf = s.max(axis=1) if s.ndim == 2 else s.reshape(-1)
            if conf.size == n and np.isfinite(conf).all():
                q = np.clip(conf, 1e-15, 1 - 1e-15)
                out["log_loss"] = float(-np.mean(correct * np.log(q) +
                                                 (1 - correct) * np.log(1 - q)))
                out["brier"] = float(np.mean((np.clip(conf, 0, 1) - correct) ** 2))
        return out
    err = predictions.astype(np.float64).reshape(-1) - truth.astype(np.float64).reshape(-1)
    if not np.isfinite(err).all():
        raise SampleDataError("labels and predictions must be finite numbers for a regressor")
    abs_err = np.abs(err)
    sd = float(err.std(ddof=1)) if n > 1 else 0.0
    abs_sd = float(abs_err.std(ddof=1)) if n > 1 else 0.0
    out = {"n": n, "mae": float(abs_err.mean()), "bias": float(err.mean())}
    if abs_sd > 0:
        out["mae_sd"] = abs_sd
    if sd > 0:
        out["error_sd"] = sd
    return out


def quantile_edges(values: np.ndarray, bins: int) -> list[float]:
    """Inner quantile cut points of ``values``: ascending, unique, all above the minimum."""
    if bins < 2:
        return []
    cuts = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    return [float(c) for c in cuts if c > values.min()]


def bin_proportions(values: np.ndarray, edges: Sequence[float]) -> list[float]:
    """Share of ``values`` in each of the ``len(edges) + 1`` bins (see the module docstring)."""
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    counts = np.bincount(index, minlength=len(edges) + 1)
    return [float(c) / len(values) for c in counts]


def _plain(values: Sequence[Any]) -> list[Any]:
    """numpy scalars → Python int/float/str so the profile is JSON-serialisable."""
    return [v.item() if isinstance(v, np.generic) else v for v in values]
