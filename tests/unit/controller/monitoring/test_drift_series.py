"""Per-feature drift over time: counts added up first, one PSI of the sum, never an average of
PSIs; too few rows give no figure (never 0); windows of another profile are skipped."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from controller.monitoring.drift_series import (
    MALFORMED,
    OTHER_PROFILE,
    PREDICTION,
    Reference,
    Skipped,
    Tally,
    collect,
    drift_by,
    feature_series,
    severity,
    verdicts,
    window_counts,
)
from controller.timebuckets import BucketPlan
from edgewise_monitoring import MonitoringWindow, ProfileError, merge_summaries
from tests.harness.profiles import make_profile

RNG = np.random.default_rng(7)
REFERENCE = RNG.normal(size=(4000, 3))
PROFILE = make_profile(REFERENCE, (REFERENCE[:, 0] > 0).astype(int), labels=[0, 1])
OTHER = make_profile(REFERENCE * 2, (REFERENCE[:, 0] > 0).astype(int), labels=[0, 1])


def _reference(profile: dict[str, Any]) -> Reference:
    reference = Reference.from_profile(profile)
    assert reference is not None
    return reference


REF = _reference(PROFILE)
PLAN = BucketPlan(start=0.0, size=100.0, count=4)


def summary(start: float, rows: int, *, shift: float = 0.0, seed: int = 0,
            profile: dict[str, Any] = PROFILE, **params: Any) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    w = MonitoringWindow(profile, "classification", [0, 1], start_ts=start,
                         embed_reference=False, **params)
    x = rng.normal(size=(rows, 3))
    x[:, 1] += shift
    w.observe(x, (x[:, 0] > 0).astype(int), np.full(rows, 0.9), 1.0)
    return w.summary(start + 10.0)


def counts(device: str, end: float, s: dict[str, Any]) -> Any:
    return window_counts(REF, device, end, s)


def test_the_reference_is_the_profiles_features_then_the_prediction() -> None:
    assert [(h.name, h.kind, h.bins) for h in REF.histograms] == [
        ("x0", "feature", 10), ("x1", "feature", 10), ("x2", "feature", 10),
        (PREDICTION, "prediction", 2)]
    assert REF.width == 3 * 11 + 3
    assert Reference.from_profile({}) is None and Reference.from_profile(None) is None
    with pytest.raises(ProfileError):
        Reference.from_profile({"n": 0, "features": []})


def test_windows_of_another_profile_or_shape_are_skipped_with_their_reason() -> None:
    with pytest.raises(Skipped) as other:
        counts("d", 5.0, summary(0, 50, profile=OTHER))
    assert other.value.reason == OTHER_PROFILE
    broken = summary(0, 50)
    broken["features"][1]["counts"] = broken["features"][1]["counts"][:-1]
    no_params = summary(0, 50)
    del no_params["params"]
    rows = [("d", 5.0, summary(0, 50)), ("d", 6.0, broken), ("d", 7.0, no_params),
            ("d", 8.0, summary(0, 50, profile=OTHER)), ("d", 9.0, {})]
    kept, skipped = collect(REF, rows)
    assert len(kept) == 1 and skipped == {MALFORMED: 2, OTHER_PROFILE: 2}


def test_a_bucket_adds_the_counts_and_judges_the_sum_as_merge_summaries_does() -> None:
    windows = [summary(i * 10.0, 40, shift=0.6, seed=i) for i in range(6)]
    kept, _ = collect(REF, [(f"d-{i % 3}", 10.0 + i * 10.0, s)
                            for i, s in enumerate(windows)])
    series = feature_series(REF, kept, PLAN)
    merged = merge_summaries(windows, profile=PROFILE)["derived"]["drift"]
    expected = {f["name"]: f for f in merged["features"]}
    expected[PREDICTION] = merged["prediction"]
    for f in series["features"]:
        point = f["points"][0]
        assert point["psi"] == pytest.approx(expected[f["name"]]["psi"], rel=1e-12)
        assert point["threshold"] == pytest.approx(expected[f["name"]]["threshold"], rel=1e-12)
        assert point["n"] == expected[f["name"]]["n"] == 240
        assert f["overall"]["psi"] == pytest.approx(point["psi"])
    assert series["buckets"][0] == {"ts": 0.0, "windows": 6, "devices": 3, "rows": 240}
    assert series["buckets"][1] == {"ts": 100.0, "windows": 0, "devices": 0, "rows": 0}


def test_thin_windows_give_no_figure_alone_but_a_real_one_added_up() -> None:
    windows = [summary(0.0, 40, shift=0.6, seed=i) for i in range(6)]
    alone = [merge_summaries([w], profile=PROFILE)["derived"]["drift"]["features"][1]["psi"]
             for w in windows]
    assert alone == [None] * 6  # 40 rows < 10 per bin x 10 bins: nothing to average either
    kept, _ = collect(REF, [("d", 50.0, w) for w in windows])
    x1 = next(f for f in feature_series(REF, kept, PLAN)["features"]
              if f["name"] == "x1")
    assert x1["points"][0]["psi"] > x1["points"][0]["threshold"]  # 240 rows: drift shows
    assert x1["points"][0]["reliable"] and x1["min_rows"] == 100


def test_a_sum_is_not_the_average_of_the_window_psis() -> None:
    windows = [summary(0.0, 300, shift=s, seed=i) for i, s in enumerate((0.0, 1.5))]
    psis = [merge_summaries([w], profile=PROFILE)["derived"]["drift"]["features"][1]["psi"]
            for w in windows]
    kept, _ = collect(REF, [("a", 50.0, windows[0]), ("b", 50.0, windows[1])])
    x1 = next(f for f in feature_series(REF, kept, PLAN)["features"]
              if f["name"] == "x1")
    assert x1["points"][0]["psi"] == pytest.approx(
        merge_summaries(windows, profile=PROFILE)["derived"]["drift"]["features"][1]["psi"])
    assert x1["points"][0]["psi"] != pytest.approx(sum(psis) / 2, rel=0.05)


def test_empty_and_thin_buckets_say_unknown_never_zero() -> None:
    kept, _ = collect(REF, [("d", 150.0, summary(100.0, 30, seed=1))])
    series = feature_series(REF, kept, PLAN)
    for f in series["features"]:
        empty = f["points"][0]
        assert empty == {"ts": 0.0, "psi": None, "threshold": None, "n": 0, "drifted": None,
                         "reliable": False}
    by_name = {f["name"]: f for f in series["features"]}
    assert by_name["x0"]["points"][1]["psi"] is None and by_name["x0"]["points"][1]["n"] == 30
    assert by_name["x0"]["latest"] is None and by_name["x0"]["peak"] is None
    assert by_name[PREDICTION]["points"][1]["psi"] is not None  # 2 classes need only 20 rows


def test_windows_fall_in_the_bucket_their_end_is_in_and_outside_ones_are_left_out() -> None:
    rows = [("d", end, summary(0.0, 120, seed=int(abs(end)))) for end in (99.9, 100.0, 399.0, 400.0,
                                                                      -1.0)]
    kept, _ = collect(REF, rows)
    series = feature_series(REF, kept, PLAN)
    assert [b["windows"] for b in series["buckets"]] == [1, 1, 0, 1]
    assert series["windows"] == 3


def test_the_drifted_feature_comes_first_and_latest_and_peak_are_its_buckets() -> None:
    rows = [("d", 50.0 + 100 * b, summary(0.0, 400, shift=1.0 if b == 2 else 0.0, seed=b))
            for b in range(4)]
    kept, _ = collect(REF, rows)
    features = feature_series(REF, kept, PLAN)["features"]
    assert features[0]["name"] == "x1"
    assert features[0]["peak"]["ts"] == 200.0 and features[0]["peak"]["drifted"]
    assert features[0]["latest"]["ts"] == 300.0 and not features[0]["latest"]["drifted"]
    assert all(not p["drifted"] for f in features[1:] for p in f["points"])


def test_per_device_and_group_sum_each_keys_windows() -> None:
    rows = [("a", 10.0, summary(0.0, 150, shift=1.0, seed=1)),
            ("a", 20.0, summary(0.0, 150, shift=1.0, seed=2)),
            ("b", 10.0, summary(0.0, 150, seed=3)), ("c", 10.0, summary(0.0, 150, seed=4))]
    kept, _ = collect(REF, rows)
    by_device = drift_by(REF, kept, lambda d: d)
    assert [r["key"] for r in by_device][0] == "a"
    a = by_device[0]
    assert (a["windows"], a["rows"], a["devices"], a["last_window_end"]) == (2, 300, 1, 20.0)
    assert a["drifted"] == ["x1"] and a["worst"]["name"] == "x1"
    site = {"a": "berlin", "b": "berlin", "c": "oslo"}
    groups = {r["key"]: r for r in drift_by(REF, kept, site.__getitem__)}
    assert groups["berlin"]["devices"] == 2 and groups["berlin"]["rows"] == 450
    tally = Tally.empty(REF)
    for w in kept[:3]:
        tally.add(w)
    settings = kept[0].settings
    assert groups["berlin"]["features"] == verdicts(REF, tally, settings)


def test_one_setting_judges_a_view_the_newest_windows() -> None:
    rows = [("d", 10.0, summary(0.0, 200, seed=1)),
            ("d", 20.0, summary(0.0, 200, seed=2, drift_base=0.3))]
    kept, _ = collect(REF, rows)
    series = feature_series(REF, kept, PLAN)
    assert series["settings"]["drift_base"] == 0.3
    assert all(f["points"][0]["threshold"] >= 0.3 for f in series["features"])


def test_severity_ranks_figures_over_their_threshold() -> None:
    assert severity({"psi": 0.2, "threshold": 0.1}) == 2.0
    assert severity({"psi": None, "threshold": None}) == -1.0 and severity({}) == -1.0


def test_a_profile_without_a_prediction_histogram_judges_the_features_only() -> None:
    features_only = make_profile(REFERENCE)
    reference = _reference(features_only)
    kept, skipped = collect(reference, [("d", 10.0, summary(0.0, 200, profile=features_only))])
    assert not skipped and len(kept) == 1
    names = [f["name"] for f in feature_series(reference, kept, PLAN)["features"]]
    assert sorted(names) == ["x0", "x1", "x2"]
