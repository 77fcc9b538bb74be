import json
from typing import Any

import numpy as np
import pytest

from edgewise_monitoring import (
    IncompatibleAggregates,
    MonitoringWindow,
    ProfileError,
    merge_summaries,
)
from edgewise_monitoring.window import merge_summaries as merge_from_window
from tests.harness.profiles import assert_close, make_profile

LABELS = [0, 1, 2]


def _classifier(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A stand-in model: label from the first feature, confidence from its distance to a cut."""
    labels = np.digitize(x[:, 0], [-0.5, 0.5]).astype(np.int64)
    max_probs = 0.5 + 0.5 * np.tanh(np.abs(x[:, 0]))
    return labels, max_probs


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(2026)


@pytest.fixture()
def profile(rng: np.random.Generator) -> dict[str, Any]:
    reference = rng.normal(size=(5000, 4))
    return make_profile(reference, _classifier(reference)[0], labels=LABELS)


def _feed(window: MonitoringWindow, rng: np.random.Generator, rows: int, shift: float = 0.0) -> None:
    for batch in np.array_split(np.arange(rows), 7):
        x = rng.normal(size=(batch.size, 4))
        x[:, 2] += shift
        labels, probs = _classifier(x)
        window.observe(x, labels, probs, latency_ms=rng.lognormal(0.0, 0.5, size=batch.size))
    window.observe(x[0], labels[:1], probs[:1], latency_ms=1.5)  # a single row, one latency
    window.observe(x[:3], None, error=True)
    truth = np.where(rng.random(labels.size) < 0.8, labels, (labels + 1) % 3)
    window.observe_feedback(labels, truth)


def test_summary_is_json_and_reports_drift(profile: dict[str, Any], rng: np.random.Generator) -> None:
    window = MonitoringWindow(profile, "classification", LABELS, start_ts=100.0)
    _feed(window, rng, 2000, shift=0.6)
    s = window.summary(160.0)
    json.dumps(s, allow_nan=False)
    assert (s["start_ts"], s["end_ts"]) == (100.0, 160.0)
    assert s["count"] == 2001 and s["errors"] == 3
    assert s["latency"]["count"] == 2001
    d = s["derived"]
    assert d["error_rate"] == pytest.approx(3 / 2004)
    assert d["drift"]["drifted_features"] == ["x2"]
    assert d["drift"]["any_drift"] is True
    assert d["drift"]["prediction"]["drifted"] is False  # the prediction ignores x2
    assert 0.0 < d["latency_ms"]["p50"] < d["latency_ms"]["p95"] < d["latency_ms"]["p99"]
    assert d["score"]["n"] == sum(c for _, _, c in s["score"]["pairs"]) > 0
    assert 0.6 < d["score"]["accuracy"] < 1.0
    assert d["estimated_accuracy"]["is_estimate"] is True
    assert 0.5 < d["estimated_accuracy"]["value"] <= 1.0


def test_empty_window_is_json_with_undefined_figures(profile: dict[str, Any]) -> None:
    s = MonitoringWindow(profile, "classification", LABELS).summary(1.0)
    json.dumps(s, allow_nan=False)
    d = s["derived"]
    assert d["error_rate"] is None
    assert d["latency_ms"] == {"mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    assert d["drift"]["features"][0] == {"name": "x0", "psi": None, "threshold": None, "n": 0,
                                         "drifted": None}
    assert d["score"] == {"n": 0, "accuracy": None, "macro_f1": None}
    assert d["estimated_accuracy"]["value"] is None


def test_merge_of_two_windows_equals_one_window_that_saw_both(profile: dict[str, Any]) -> None:
    a = MonitoringWindow(profile, "classification", LABELS, start_ts=0.0)
    b = MonitoringWindow(profile, "classification", LABELS, start_ts=60.0)
    both = MonitoringWindow(profile, "classification", LABELS, start_ts=0.0)
    _feed(a, np.random.default_rng(1), 700, shift=0.3)
    _feed(both, np.random.default_rng(1), 700, shift=0.3)
    _feed(b, np.random.default_rng(2), 900)
    _feed(both, np.random.default_rng(2), 900)
    merged = merge_summaries([a.summary(60.0), b.summary(120.0)])
    assert_close(merged, both.summary(120.0))
    # The merged summary is a summary: it merges again, and the order does not matter.
    c = MonitoringWindow(profile, "classification", LABELS, start_ts=120.0)
    _feed(c, np.random.default_rng(3), 300)
    sa, sb, sc = a.summary(60.0), b.summary(120.0), c.summary(180.0)
    assert_close(merge_summaries([merge_summaries([sa, sb]), sc]), merge_summaries([sc, sb, sa]))
    assert merge_from_window is merge_summaries


def test_merge_of_regression_windows(rng: np.random.Generator) -> None:
    reference = rng.normal(size=(3000, 2))
    profile = make_profile(reference, reference @ [1.0, -2.0])
    windows = [MonitoringWindow(profile, "regression") for _ in range(3)]
    both = MonitoringWindow(profile, "regression")
    for w in windows:
        x = rng.normal(size=(400, 2))
        y = x @ [1.0, -2.0]
        truth = y + rng.normal(0, 0.3, size=y.size)
        for target in (w, both):
            target.observe(x, y, latency_ms=0.2)
            target.observe_feedback(y[:100], truth[:100])
    merged = merge_summaries([w.summary(10.0) for w in windows])
    assert_close(merged, both.summary(10.0))
    d = merged["derived"]
    json.dumps(merged, allow_nan=False)
    assert d["score"]["n"] == 300
    assert d["score"]["rmse"] == pytest.approx(0.3, rel=0.2)
    assert d["estimated_accuracy"] is None
    assert d["drift"]["prediction"]["drifted"] is False


def test_merge_refuses_different_profiles(profile: dict[str, Any], rng: np.random.Generator) -> None:
    other = make_profile(rng.normal(size=(5000, 4)), None)
    a = MonitoringWindow(profile, "classification", LABELS).summary(1.0)
    b = MonitoringWindow(other, "classification", LABELS).summary(1.0)
    c = MonitoringWindow(profile, "classification", LABELS, drift_base=0.2).summary(1.0)
    for pair in ([a, b], [a, c]):
        with pytest.raises(IncompatibleAggregates):
            merge_summaries(pair)
    with pytest.raises(ValueError):
        merge_summaries([])


def test_reset_starts_a_new_window_but_keeps_adwin(profile: dict[str, Any], rng: np.random.Generator) -> None:
    window = MonitoringWindow(profile, "classification", LABELS)
    _feed(window, rng, 500)
    seen = window.adwin.seen if window.adwin else 0
    window.reset(50.0)
    fresh = MonitoringWindow(profile, "classification", LABELS, start_ts=50.0)
    assert_close(window.summary(60.0), fresh.summary(60.0))
    assert window.adwin is not None and window.adwin.seen == seen > 0


def test_concept_drift_shows_in_feedback(profile: dict[str, Any], rng: np.random.Generator) -> None:
    window = MonitoringWindow(profile, "classification", LABELS)
    labels = rng.integers(0, 3, size=4000)
    wrong = (labels + 1) % 3
    truth = np.where(rng.random(4000) < 0.1, wrong, labels)
    assert not window.observe_feedback(labels, truth)
    truth = np.where(rng.random(4000) < 0.4, wrong, labels)
    assert window.observe_feedback(labels, truth)
    s = window.summary(1.0)
    assert s["concept_drift_detections"] >= 1
    assert s["derived"]["concept_drift"] is True


def test_works_without_a_profile(rng: np.random.Generator) -> None:
    window = MonitoringWindow({}, "classification", ["no", "yes"])
    x = rng.normal(size=(50, 3))
    window.observe(x, np.where(x[:, 0] > 0, "yes", "no").astype(object), latency_ms=2.0)
    s = window.summary(5.0)
    json.dumps(s, allow_nan=False)
    assert s["profile_id"] is None and s["features"] == []
    assert s["prediction"]["labels"] == ["no", "yes"]
    assert sum(s["prediction"]["counts"]) == 50
    assert s["derived"]["drift"]["prediction"] is None
    assert merge_summaries([s, s])["count"] == 100


def test_bad_input_is_refused(profile: dict[str, Any], rng: np.random.Generator) -> None:
    with pytest.raises(ValueError):
        MonitoringWindow(profile, "ranking")
    with pytest.raises(ProfileError):
        MonitoringWindow(profile, "regression")  # categorical prediction profile
    with pytest.raises(ProfileError):
        MonitoringWindow({"n": 10, "features": [{"name": "a", "edges": [1.0, 0.0],
                                                 "proportions": [0.3, 0.3, 0.4]}]}, "regression")
    with pytest.raises(ProfileError):
        MonitoringWindow({"n": 10, "features": [{"name": "a", "edges": [0.0],
                                                 "proportions": [0.3, 0.3]}]}, "regression")
    window = MonitoringWindow(profile, "classification", LABELS)
    with pytest.raises(ValueError):
        window.observe(rng.normal(size=(5, 3)), np.zeros(5))  # 3 features, profile has 4
    with pytest.raises(ValueError):
        window.observe(rng.normal(size=(5, 4)), np.zeros(4))
    before = window.summary(1.0)
    x, labels = rng.normal(size=(5, 4)), np.zeros(5, dtype=np.int64)
    for bad in (
        {"latency_ms": -1.0},
        {"latency_ms": [1.0, 2.0]},
        {"latency_ms": [1.0, 2.0, 3.0, 4.0, float("nan")]},
        {"max_probs": [0.9, 0.8]},
    ):
        with pytest.raises(ValueError):
            window.observe(x, labels, **bad)
    assert window.summary(1.0) == before  # a refused call counts nothing


def test_summaries_without_embedded_reference(profile: dict[str, Any]) -> None:
    full = MonitoringWindow(profile, "classification", LABELS)
    lean = MonitoringWindow(profile, "classification", LABELS, embed_reference=False)
    for window in (full, lean):
        _feed(window, np.random.default_rng(11), 1500, shift=0.6)
    s_full, s_lean = full.summary(1.0), lean.summary(1.0)
    assert "expected" not in s_lean["features"][0] and "expected" not in s_lean["prediction"]
    assert len(json.dumps(s_lean)) < len(json.dumps(s_full))
    # The device has the profile, so its own figures are complete.
    assert_close(s_lean["derived"], s_full["derived"])
    # Merging needs the profile back; without it the drift figures are unknown, not wrong.
    blind = merge_summaries([s_lean, s_lean])
    assert blind["derived"]["drift"]["features"][0]["psi"] is None
    assert blind["derived"]["drift"]["prediction"] is None
    assert blind["derived"]["score"] == merge_summaries([s_full, s_full])["derived"]["score"]
    informed = merge_summaries([s_lean, s_lean], profile=profile)
    assert_close(informed["derived"], merge_summaries([s_full, s_full])["derived"])
    other = dict(profile, n=profile["n"] + 1)
    with pytest.raises(IncompatibleAggregates):
        merge_summaries([s_lean], profile=other)
    with pytest.raises(IncompatibleAggregates):
        merge_summaries([s_lean, s_full])
