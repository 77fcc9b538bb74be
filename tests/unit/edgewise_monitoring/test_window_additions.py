"""The window's optional additions: loss, per-label error test, unmatched labels, and backward
compatibility (summaries without them, from older agents, still merge)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest

from edge_agent.model_monitor import ModelMonitor
from edgewise_monitoring import MonitoringWindow, merge_summaries
from tests.harness.profiles import make_profile
from tests.integration.controller.store.conftest import build_manifest

OPTIONAL = ("concept_drift_increases", "expected", "loss", "error_test", "feedback_unmatched")


def _profile(rng: np.random.Generator, accuracy: float | None = 0.9) -> dict[str, Any]:
    ref = rng.normal(size=(2000, 3))
    profile = make_profile(ref, (ref[:, 0] > 0).astype(int), labels=[0, 1])
    if accuracy is not None:
        profile["quality"] = {"n": 2000, "accuracy": accuracy}
    return profile


def test_loss_and_error_test_in_the_summary() -> None:
    rng = np.random.default_rng(0)
    window = MonitoringWindow(_profile(rng), "classification", [0, 1])
    pred = rng.integers(0, 2, 400)
    truth = np.where(rng.random(400) < 0.9, pred, 1 - pred)
    conf = rng.uniform(0.6, 1.0, 400)
    window.observe_feedback(pred, truth, conf)
    s = window.summary(1.0)
    assert s["loss"]["n"] == 400 and s["derived"]["loss"]["log_loss"] > 0
    assert s["error_test"]["labels"] == 400 and s["error_test"]["alarms"] == 0
    assert s["derived"]["prediction_bias"]["n"] == 400
    json.dumps(s, allow_nan=False)
    # a concept change: the per-label test alarms within the window, with its reason
    wrong = 1 - pred
    assert window.observe_feedback(pred[:100], wrong[:100]) is True
    s = window.summary(2.0)
    assert s["error_test"]["alarms"] >= 1 and "above the reference" in s["error_test"]["details"][0]
    assert s["derived"]["error_test_alarms"] >= 1


def test_confidences_of_another_length_are_refused_before_counting() -> None:
    window = MonitoringWindow(_profile(np.random.default_rng(1)), "classification", [0, 1])
    with pytest.raises(ValueError):
        window.observe_feedback([0, 1], [0, 1], [0.9])
    assert window.score.count == 0 and window.error_test_labels == 0


def test_no_error_test_without_a_reference_accuracy_or_when_turned_off() -> None:
    rng = np.random.default_rng(2)
    assert MonitoringWindow(_profile(rng, None), "classification", [0, 1]).error_test is None
    assert MonitoringWindow(_profile(rng), "classification", [0, 1],
                            error_test=False).error_test is None
    s = MonitoringWindow(_profile(rng, None), "classification", [0, 1]).summary(1.0)
    assert "error_test" not in s and s["derived"]["error_test_alarms"] == 0


def test_old_summaries_without_the_additions_still_merge() -> None:
    rng = np.random.default_rng(3)
    window = MonitoringWindow(_profile(rng), "classification", [0, 1])
    x = rng.normal(size=(200, 3))
    pred = (x[:, 0] > 0).astype(int)
    window.observe(x, pred, rng.uniform(0.5, 1, 200))
    window.observe_feedback(pred[:50], pred[:50], np.full(50, 0.8))
    new = window.summary(1.0)
    old = {k: v for k, v in new.items() if k not in OPTIONAL}
    old["derived"] = {k: v for k, v in new["derived"].items()
                      if k not in ("loss", "prediction_bias", "error_test_alarms")}
    merged = merge_summaries([old, new, old])
    assert merged["count"] == 3 * new["count"]
    assert merged["loss"]["n"] == 50  # only the new summary had it: its own n says so
    assert merged["score"]["pairs"] == [[0, 0, 3 * sum(1 for p in pred[:50] if p == 0)],
                                        [1, 1, 3 * sum(1 for p in pred[:50] if p == 1)]]
    only_old = merge_summaries([old, old])
    assert not any(k in only_old for k in OPTIONAL)
    assert only_old["derived"]["loss"] is None


def test_model_monitor_passes_confidences_and_counts_unmatched_labels() -> None:
    rng = np.random.default_rng(4)
    manifest = dataclasses.replace(build_manifest(b"m"), version=1,
                                   reference_profile=_profile(rng))
    monitor = ModelMonitor(60.0)
    monitor.switch(manifest, now=0.0, mono=0.0)
    monitor.observe_feedback(manifest.model, 1, 1, 1, 0.75)
    monitor.observe_feedback(manifest.model, 1, 0, 1)  # no confidence: scored, no loss
    monitor.observe_unmatched_feedback()
    record = monitor.close(10.0)
    assert record is not None
    s = record["summary"]
    assert s["score"]["pairs"] and s["loss"]["n"] == 1 and s["feedback_unmatched"] == 1
    assert monitor.stats["feedback_unmatched"] == 1
