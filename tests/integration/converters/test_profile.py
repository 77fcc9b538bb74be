"""The reference profile: well-formed bins that the device can reproduce."""

from __future__ import annotations

import json

import numpy as np
import pytest

from converters import SampleDataError, build_reference_profile
from converters.profile import bin_proportions, quantile_edges


def test_profile_shape_and_invariants() -> None:
    rng = np.random.default_rng(1)
    sample = np.column_stack([rng.normal(size=500), rng.integers(0, 3, 500), np.full(500, 7.0)])
    preds = rng.integers(0, 2, 500)
    profile = build_reference_profile(sample, preds, ["x", "k", "c"], "classification", [0, 1],
                                      bins=10)
    assert json.loads(json.dumps(profile)) == profile
    assert profile["n"] == 500 and profile["bins"] == 10
    for feature in profile["features"]:
        edges = feature["edges"]
        assert edges == sorted(set(edges)) and len(edges) <= 9
        assert len(feature["proportions"]) == len(edges) + 1
        assert sum(feature["proportions"]) == pytest.approx(1.0)
    x, k, c = profile["features"]
    assert len(x["edges"]) == 9 and all(p == pytest.approx(0.1) for p in x["proportions"])
    assert len(k["edges"]) <= 2 and min(p for p in k["proportions"]) > 0  # ties deduplicated
    assert c == {"name": "c", "edges": [], "proportions": [1.0]}  # constant feature
    prediction = profile["prediction"]
    assert prediction["kind"] == "categorical" and prediction["labels"] == [0, 1]
    assert sum(prediction["proportions"]) == pytest.approx(1.0)


def test_bins_follow_searchsorted_right() -> None:
    """A value equal to an edge belongs to the bin above it (the device-side convention)."""
    values = np.array([1.0, 2.0, 2.0, 3.0])
    assert bin_proportions(values, [2.0]) == [0.25, 0.75]
    assert quantile_edges(np.array([5.0, 5.0, 5.0]), 10) == []
    assert quantile_edges(np.array([0.0, 1.0]), 1) == []


def test_regression_prediction_is_binned() -> None:
    sample = np.arange(100.0).reshape(-1, 1)
    profile = build_reference_profile(sample, sample[:, 0] * 2, ["x"], "regression", None,
                                      bins=4)
    prediction = profile["prediction"]
    assert prediction["kind"] == "numeric" and len(prediction["edges"]) == 3
    assert prediction["proportions"] == [0.25, 0.25, 0.25, 0.25]


def test_string_labels_without_class_list() -> None:
    preds = np.array(["b", "a", "b", "b"], dtype=object)
    profile = build_reference_profile(np.zeros((4, 1)), preds, ["x"], "classification", None)
    assert profile["prediction"]["labels"] == ["a", "b"]
    assert profile["prediction"]["proportions"] == [0.25, 0.75]


def test_profile_rejects_mismatches() -> None:
    with pytest.raises(SampleDataError, match="2 feature names given for 1"):
        build_reference_profile(np.zeros((3, 1)), np.zeros(3), ["a", "b"], "regression", None)
    with pytest.raises(SampleDataError, match="predictions has 2 entries"):
        build_reference_profile(np.zeros((3, 1)), np.zeros(2), ["a"], "regression", None)
    with pytest.raises(ValueError, match="task"):
        build_reference_profile(np.zeros((3, 1)), np.zeros(3), ["a"], "ranking", None)
