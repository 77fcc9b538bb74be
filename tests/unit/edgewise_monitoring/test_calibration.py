"""Calibration maps and the calibrated label-free accuracy estimate (CBPE)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgewise_monitoring import MonitoringWindow, ReferenceProfile
from edgewise_monitoring.calibration import (
    CalibrationMap,
    fit_calibration,
    fit_isotonic,
    fit_platt,
)
from edgewise_monitoring.expected_accuracy import ExpectedAccuracy
from tests.harness.profiles import make_profile

W = np.array([1.5, -1.0, 0.8, 0.0])


def _population(rng: np.random.Generator, n: int, shift: float = 0.0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inputs, true labels (P(y=1|x) = sigmoid(w.x)), an over-confident model's positive-class
    probability (its logit tripled, as boosted trees and nets tend to be) and its labels."""
    x = rng.normal(size=(n, W.size))
    x[:, 0] += shift
    p_true = 1 / (1 + np.exp(-(x @ W)))
    y = (rng.random(n) < p_true).astype(int)
    p_model = 1 / (1 + np.exp(-3 * (x @ W)))
    return x, y, p_model, (p_model >= 0.5).astype(int)


def test_isotonic_fit_is_monotone_and_pools_violators() -> None:
    x, y = fit_isotonic([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1])
    assert list(y) == [0.0, 0.5, 1.0] and np.all(np.diff(x) > 0)
    rng = np.random.default_rng(0)
    s = rng.random(20_000)
    o = (rng.random(20_000) < s**2).astype(float)
    kx, ky = fit_isotonic(s, o)
    assert kx.size <= 64 and np.all(np.diff(ky) >= 0)
    assert np.interp(0.5, kx, ky) == pytest.approx(0.25, abs=0.05)


def test_platt_recovers_a_logistic_map() -> None:
    rng = np.random.default_rng(1)
    s = rng.uniform(0.01, 0.99, 20_000)
    z = 0.5 * np.log(s / (1 - s)) + 0.3
    o = (rng.random(s.size) < 1 / (1 + np.exp(-z))).astype(float)
    a, b = fit_platt(s, o)
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(0.3, abs=0.05)


def test_cbpe_tracks_accuracy_under_covariate_shift_where_confidence_does_not() -> None:
    rng = np.random.default_rng(2)
    _, y, p, pred = _population(rng, 4000)
    block = fit_calibration(pred, np.column_stack([1 - p, p]), y, [0, 1])
    assert block is not None and block["target"] == "positive_class"
    cmap = CalibrationMap.from_dict(block)
    for shift in (0.0, 0.5, 1.0, -1.0):
        _, y2, p2, pred2 = _population(rng, 20_000, shift)
        c, is_pos = cmap.correct_probability(pred2, np.maximum(p2, 1 - p2))
        acc = ExpectedAccuracy(binary=True)
        acc.add(c, is_pos)
        est = acc.estimate(cmap.level_se)
        assert est is not None
        truth = float(np.mean(pred2 == y2))
        assert est["value"] == pytest.approx(truth, abs=0.02)
        assert est["ci_low"] <= truth <= est["ci_high"]
        assert np.mean(np.maximum(p2, 1 - p2)) - truth > 0.05  # uncalibrated: far off


def test_top_label_map_for_multiclass() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    logits = rng.normal(size=(n, 3)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = np.array([rng.choice(3, p=row) for row in probs])
    sharp = probs**3 / (probs**3).sum(axis=1, keepdims=True)
    pred = sharp.argmax(axis=1)
    block = fit_calibration(pred, sharp, truth, [0, 1, 2])
    assert block is not None and block["target"] == "top_label"
    hold = block["holdout"]
    assert abs(hold["estimated_accuracy"] - hold["accuracy"]) < 0.03
    assert hold["mean_confidence"] - hold["accuracy"] > 0.05


def test_small_samples_use_platt_and_tiny_ones_get_no_map() -> None:
    rng = np.random.default_rng(4)
    _, y, p, pred = _population(rng, 400)
    block = fit_calibration(pred, np.maximum(p, 1 - p), y, [0, 1])  # max-probability per row
    assert block is not None and block["method"] == "platt"
    assert fit_calibration(pred[:50], p[:50], y[:50], [0, 1]) is None


def test_map_round_trips_and_bad_blocks_are_reported_not_fatal() -> None:
    rng = np.random.default_rng(5)
    _, y, p, pred = _population(rng, 2000)
    block = fit_calibration(pred, np.column_stack([1 - p, p]), y, [0, 1])
    assert block is not None
    again = CalibrationMap.from_dict(json.loads(json.dumps(block)))
    assert again.to_dict() == {k: v for k, v in block.items() if k != "holdout"}
    ref = rng.normal(size=(500, 2))
    profile = make_profile(ref, rng.integers(0, 2, 500), labels=[0, 1])
    profile["calibration"] = {"method": "isotonic", "target": "top_label", "x": [0.5, 0.4],
                              "y": [0.5, 0.6]}
    parsed = ReferenceProfile.from_dict(profile)
    assert parsed.calibration is None and "calibration" in parsed.problems[0]
    assert len(parsed.features) == 2  # drift still works


def test_window_reports_cbpe_with_interval_and_merges() -> None:
    rng = np.random.default_rng(6)
    x, y, p, pred = _population(rng, 4000)
    profile = make_profile(x, pred, labels=[0, 1])
    block = fit_calibration(pred, np.column_stack([1 - p, p]), y, [0, 1])
    assert block is not None
    profile["calibration"] = block
    window = MonitoringWindow(profile, "classification", [0, 1])
    x2, y2, p2, pred2 = _population(rng, 3000, shift=1.0)
    window.observe(x2, pred2, np.maximum(p2, 1 - p2))
    s = window.summary(1.0)
    est = s["derived"]["estimated_accuracy"]
    assert est["method"].startswith("calibrated") and est["ci_low"] < est["value"] < est["ci_high"]
    assert est["value"] == pytest.approx(float(np.mean(pred2 == y2)), abs=0.03)
    assert est["average_confidence_estimate"] > est["value"]
    assert set(est["confusion"]) == {"tp", "fp", "fn", "tn"}
    from edgewise_monitoring import merge_summaries

    merged = merge_summaries([s, s])
    assert merged["expected"]["n"] == 2 * s["expected"]["n"]
    assert merged["derived"]["estimated_accuracy"]["value"] == pytest.approx(est["value"])
