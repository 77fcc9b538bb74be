"""The converter's profile extras: reference quality and the calibration map, optional."""

from __future__ import annotations

import json

import numpy as np

from converters.profile import build_reference_profile
from edgewise_monitoring import ReferenceProfile


def test_profile_with_labels_and_scores_carries_quality_and_calibration() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 3))
    p = 1 / (1 + np.exp(-3 * x[:, 0]))
    pred = (p >= 0.5).astype(int)
    truth = (rng.random(1000) < 1 / (1 + np.exp(-x[:, 0]))).astype(int)
    profile = build_reference_profile(x, pred, ["a", "b", "c"], "classification", [0, 1],
                                      labels=truth, scores=np.column_stack([1 - p, p]))
    json.dumps(profile, allow_nan=False)
    q = profile["quality"]
    assert q["n"] == 1000 and q["accuracy"] == float(np.mean(pred == truth))
    assert q["log_loss"] > 0 and 0 < q["brier"] < 1
    parsed = ReferenceProfile.from_dict(profile)
    assert parsed.calibration is not None and parsed.problems == ()
    assert parsed.calibration.target == "positive_class"


def test_regression_quality_and_no_extras_without_labels() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 2))
    pred = x[:, 0] * 2
    truth = pred - rng.normal(0.1, 1.0, 300)
    profile = build_reference_profile(x, pred, ["a", "b"], "regression", None, labels=truth)
    assert set(profile["quality"]) == {"n", "mae", "mae_sd", "bias", "error_sd"}
    assert "calibration" not in profile
    bare = build_reference_profile(x, pred, ["a", "b"], "regression", None)
    assert "quality" not in bare and "calibration" not in bare


def test_labels_that_do_not_fit_leave_the_profile_as_before() -> None:
    x = np.random.default_rng(2).normal(size=(50, 2))
    pred = (x[:, 0] > 0).astype(int)
    profile = build_reference_profile(x, pred, ["a", "b"], "classification", [0, 1],
                                      labels=pred[:10])
    assert "quality" not in profile and "calibration" not in profile
