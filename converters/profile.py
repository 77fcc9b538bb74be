"""The reference profile: how inputs and predictions were distributed when the model shipped.

Devices bin what they see with the same cut points and compare proportions (e.g. PSI) to raise
drift alarms without sending raw data home. The profile is plain JSON so it travels inside the
manifest.

Format::

    {"n": rows, "bins": bins,
     "features": [{"name": str, "edges": [cut points], "proportions": [len(edges) + 1 floats]}],
     "prediction": {"kind": "categorical", "labels": [...], "proportions": [...]}
                 | {"kind": "numeric", "edges": [...], "proportions": [...]}}

Bin convention (the device side must implement exactly this): ``edges`` are the inner cut
points, strictly ascending; a value ``v`` falls in bin ``np.searchsorted(edges, v, side="right")``,
i.e. bin ``i`` holds ``edges[i-1] <= v < edges[i]``, bin 0 everything below ``edges[0]`` and the
last bin everything from ``edges[-1]`` up. With ``edges == []`` every value is in bin 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from converters.errors import SampleDataError
from converters.validation import check_labels, check_sample

TASKS = ("classification", "regression")


def build_reference_profile(sample: np.ndarray, predictions: np.ndarray,
                            feature_names: Sequence[str], task: str,
                            class_labels: Sequence[Any] | None, bins: int = 10) -> dict[str, Any]:
    """Summarise ``sample`` and the model's ``predictions`` on it as quantile-binned proportions.

    Edges are the sample's quantiles at 1/bins ... (bins-1)/bins with ties removed, and with cut
    points at the column minimum dropped (they would only make an always-empty first bin); so
    each feature has at most ``bins - 1`` edges and a constant feature has none. Predictions are
    counted per class for classification (in ``class_labels`` order when given, else sorted
    unique values) and binned like a feature for regression.
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
        labels = list(class_labels) if class_labels is not None else np.unique(preds).tolist()
        counts = [int(np.count_nonzero(preds == label)) for label in labels]
        prediction = {"kind": "categorical", "labels": _plain(labels),
                      "proportions": [c / preds.shape[0] for c in counts]}
    else:
        values = check_sample(preds.reshape(-1, 1), what="predictions")[:, 0]
        edges = quantile_edges(values, bins)
        prediction = {"kind": "numeric", "edges": edges,
                      "proportions": bin_proportions(values, edges)}
    return {"n": int(matrix.shape[0]), "bins": int(bins), "features": features,
            "prediction": prediction}


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
