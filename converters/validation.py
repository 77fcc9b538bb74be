"""Checks on sample data shared by the loaders, the profile builder and the converters.

The sample drives parity checks, smoke tests and the drift reference profile, so a bad sample
must be refused up front with a message that says expected vs got, not surface later as an
onnxruntime shape error or a NaN in a profile.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from converters.errors import SampleDataError


def check_sample(sample: Any, n_features: int | None = None, *, what: str = "sample") -> np.ndarray:
    """Return ``sample`` as a 2-D float64 array of finite numbers, or raise SampleDataError.

    ``n_features``, when known (e.g. an estimator's ``n_features_in_``), must equal the number of
    columns.
    """
    try:
        array = np.asarray(sample)
    except Exception as exc:  # ragged lists and odd objects raise various errors
        raise SampleDataError(f"{what} cannot be read as an array: {exc}") from exc
    if array.dtype.kind not in "biuf":
        raise SampleDataError(
            f"{what} must be numeric, got dtype {array.dtype} (expected integers or floats)")
    if array.ndim != 2:
        raise SampleDataError(
            f"{what} must be 2-D (rows x features), got shape {array.shape}")
    if array.shape[0] == 0:
        raise SampleDataError(f"{what} is empty: expected at least one row, got shape {array.shape}")
    if n_features is not None and array.shape[1] != n_features:
        raise SampleDataError(
            f"{what} has {array.shape[1]} columns but the model expects {n_features} features")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise SampleDataError(
            f"{what} must be finite: found NaN or infinity (first at row {bad[0]}, column {bad[1]})")
    return array


def check_labels(labels: Any, n_rows: int, *, what: str = "labels") -> np.ndarray:
    """Return ``labels`` as a 1-D array with one entry per sample row, or raise SampleDataError."""
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise SampleDataError(f"{what} must be 1-D (one per row), got shape {array.shape}")
    if array.shape[0] != n_rows:
        raise SampleDataError(f"{what} has {array.shape[0]} entries but the sample has {n_rows} rows")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise SampleDataError(f"{what} must be finite: found NaN or infinity")
    return array
