"""The drift view (``GET /api/v1/drift/{model}``, ``DriftViews``) over a known history
(tests/harness/drift_fleet.py), on SQLite and PostgreSQL: the shifted feature rises after its
shift and the others stay low, buckets add the fleet's counts, markers, per device and group,
and what it says when there is nothing to show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from controller.monitoring.drift_buckets import BucketTallies
from controller.monitoring.drift_series import OTHER_PROFILE, PREDICTION, Reference
from controller.storage.tables import metrics
from controller.timebuckets import plan_buckets
from edgewise_monitoring import merge_summaries, profile_id
from edgewise_wire import TelemetryBatch
from tests.harness.drift_fleet import (
    DRIFTING,
    FEATURES,
    MODEL,
    PROFILE,
    SHIFT_AGO,
    SHIFTED,
    STALE_WINDOWS,
    SWITCH_AGO,
    WINDOW_S,
    DriftFleet,
    first_alert_ts,
    make_controller,
    populate,
    window,
)

HOUR_IN_5_MIN = {"version": 2, "window": 3600, "buckets": 12}


def _view(fleet: DriftFleet, **params: Any) -> dict[str, Any]:
    r = fleet.get(**params)
    assert r.status_code == 200, r.text
    return r.json()


def _by_name(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in view["features"]}


def test_the_shifted_feature_rises_after_the_shift_and_the_others_stay_low(
        drift_fleet: DriftFleet) -> None:
    view = _view(drift_fleet, **HOUR_IN_5_MIN)
    assert (view["status"], view["reason"], view["has_profile"]) == ("ok", None, True)
    assert view["bucket_s"] == 300 and len(view["buckets"]) == len(view["features"][0]["points"])
    assert view["devices"] == 4 and view["skipped"] == {OTHER_PROFILE: STALE_WINDOWS}
    assert view["features_total"] == 4 and view["features"][0]["name"] == SHIFTED
    shift = drift_fleet.now - SHIFT_AGO
    features = _by_name(view)
    before = after = 0
    for i, point in enumerate(features[SHIFTED]["points"]):
        bucket_end = point["ts"] + view["bucket_s"]
        if bucket_end <= shift and point["reliable"]:
            assert point["psi"] < point["threshold"] and not point["drifted"], point
            before += 1
        elif point["ts"] - WINDOW_S >= shift and point["reliable"]:  # every window after it
            assert point["psi"] > 0.3 and point["drifted"], point
            after += 1
        for other in (*[f for f in FEATURES if f != SHIFTED], PREDICTION):
            other_point = features[other]["points"][i]
            assert other_point["drifted"] in (False, None), (other, other_point)
    assert before >= 4 and after >= 3
    assert features[SHIFTED]["latest"]["drifted"] and features[SHIFTED]["peak"]["drifted"]
    assert all(not f["overall"]["drifted"] for name, f in features.items() if name != SHIFTED)


def test_a_bucket_is_the_psi_of_the_fleets_counts_added_up(drift_fleet: DriftFleet) -> None:
    view = _view(drift_fleet, **HOUR_IN_5_MIN)
    point_index = len(view["buckets"]) - 3  # a full bucket after the shift
    bucket = view["buckets"][point_index]
    start, end = bucket["ts"], bucket["ts"] + view["bucket_s"]
    m = metrics.c
    with drift_fleet.controller.db.read() as conn:
        rows = conn.execute(sa.select(m.summary_json).where(
            m.model == MODEL, m.version == 2, m.window_end >= start, m.window_end < end)).all()
    summaries = [json.loads(r.summary_json) for r in rows]
    counted = [s for s in summaries if s["profile_id"] == profile_id(PROFILE)]
    assert bucket["windows"] == len(counted) > 1 and bucket["rows"] == 60 * len(counted)
    assert bucket["devices"] == 3  # d-4 runs v3 by then
    merged = merge_summaries(counted, profile=PROFILE)["derived"]["drift"]["features"]
    alone = [merge_summaries([s], profile=PROFILE)["derived"]["drift"]["features"]
             for s in counted]
    for j, name in enumerate(FEATURES):
        point = _by_name(view)[name]["points"][point_index]
        assert point["psi"] == pytest.approx(merged[j]["psi"], rel=1e-9)
        assert point["n"] == merged[j]["n"] == bucket["rows"]
        assert all(f[j]["psi"] is None for f in alone)  # 60 rows: no figure for one window


def test_markers_show_version_changes_rollouts_and_this_versions_alerts(
        drift_fleet: DriftFleet) -> None:
    v2 = _view(drift_fleet, **HOUR_IN_5_MIN)["markers"]
    kinds = [m["kind"] for m in v2]
    assert kinds == ["alert_fired", "rollout_started", "version_stopped", "rollout_ended"]
    fired = v2[0]
    assert fired["count"] == 2 and fired["devices"] == list(DRIFTING)
    assert fired["ts"] == pytest.approx(first_alert_ts(drift_fleet.now))
    assert fired["text"] == "drift alert fired on 2 devices: d-1, d-2"
    stopped = v2[2]
    assert stopped["text"] == f"{MODEL}:2 stopped on d-4 (now {MODEL}:3)"
    assert stopped["ts"] == pytest.approx(drift_fleet.now - SWITCH_AGO)
    assert "temp drifted" not in json.dumps(v2)  # v3's alert is not v2's
    v3 = _view(drift_fleet, version=3, window=3600, buckets=12)["markers"]
    assert [m["kind"] for m in v3] == ["rollout_started", "version_started", "rollout_ended",
                                       "alert_fired"]
    assert v3[1]["text"] == f"{MODEL}:3 started on d-4 (was {MODEL}:2)"
    assert v3[3]["text"] == "drift alert fired on d-4 (temp drifted)"


def test_per_device_and_per_group_over_the_range(drift_fleet: DriftFleet) -> None:
    by_device = _view(drift_fleet, by="device", **HOUR_IN_5_MIN)
    rows = by_device["rows"]
    assert by_device["rows_total"] == 4 and by_device["features"] == []
    assert {r["key"] for r in rows[:2]} == set(DRIFTING)
    for r in rows:
        assert r["drifted"] == ([SHIFTED] if r["key"] in DRIFTING else []), r
        assert [f["name"] for f in r["features"]] == [*FEATURES, PREDICTION]
    assert {r["key"]: r["windows"] for r in rows} == {
        "d-1": 60, "d-2": 60, "d-3": 60, "d-4": int((3600 - SWITCH_AGO) // WINDOW_S)}
    one = _view(drift_fleet, by="device", limit=1, **HOUR_IN_5_MIN)
    assert len(one["rows"]) == 1 and one["rows_total"] == 4
    groups = {r["key"]: r for r in _view(drift_fleet, by="group", **HOUR_IN_5_MIN)["rows"]}
    assert set(groups) == {"berlin", "oslo"}
    assert groups["berlin"]["drifted"] == [SHIFTED] and groups["berlin"]["devices"] == 2
    assert groups["oslo"]["drifted"] == [] and groups["oslo"]["worst"]["psi"] < 0.05
    unlabelled = _view(drift_fleet, by="group", group_by="hw", **HOUR_IN_5_MIN)
    assert [r["key"] for r in unlabelled["rows"]] == [""] and unlabelled["group_by"] == "hw"


def test_the_latest_version_by_default_and_top_features(drift_fleet: DriftFleet) -> None:
    latest = _view(drift_fleet, window=3600, buckets=12)
    assert latest["version"] == 3 and latest["devices"] == 1
    top = _view(drift_fleet, top=2, **HOUR_IN_5_MIN)
    assert [f["name"] for f in top["features"]][0] == SHIFTED
    assert len(top["features"]) == 2 and top["features_total"] == 4


def test_a_version_without_a_profile_says_so(drift_fleet: DriftFleet) -> None:
    view = _view(drift_fleet, version=1, window=3600, buckets=12)
    assert (view["status"], view["has_profile"], view["features"]) == ("no_profile", False, [])
    assert "registered without a reference profile" in view["reason"]
    assert _view(drift_fleet, version=1, by="group")["status"] == "no_profile"


def test_unknown_models_and_versions_are_404(drift_fleet: DriftFleet) -> None:
    r = drift_fleet.client.get("/api/v1/drift/nothing")
    assert r.status_code == 404 and "nothing" in r.json()["detail"]
    r = drift_fleet.get(version=9)
    assert r.status_code == 404 and f"{MODEL}:9" in r.json()["detail"]


@pytest.mark.parametrize("params", [
    {"by": "sideways"}, {"window": 10}, {"window": 31 * 86400}, {"buckets": 1},
    {"buckets": 501}, {"top": 0}, {"top": 1001}, {"version": -1}, {"version": 2**31},
    {"group_by": "bad label!"}, {"limit": 0}, {"limit": 5001}, {"version": "two"},
])
def test_bad_parameters_are_422(drift_fleet: DriftFleet, params: dict[str, Any]) -> None:
    r = drift_fleet.get(**params)
    assert r.status_code == 422, r.text


def test_the_fleet_wide_psi_per_feature_is_a_prometheus_gauge(drift_fleet: DriftFleet) -> None:
    text = drift_fleet.client.get("/metrics").text
    lines = [line for line in text.splitlines() if line.startswith("edgewise_feature_drift_psi{")]
    gauges = {}
    for line in lines:
        labels, value = line.rsplit(" ", 1)
        gauges[labels] = float(value)
    assert all("group=" not in k and "device" not in k for k in gauges)
    load = gauges[f'edgewise_feature_drift_psi{{feature="load",model="{MODEL}",version="2"}}']
    temp = gauges[f'edgewise_feature_drift_psi{{feature="temp",model="{MODEL}",version="2"}}']
    assert load > 0.3 and temp < 0.1
    assert f'feature="{PREDICTION}",model="{MODEL}",version="2"' in "".join(gauges)
    assert "# TYPE edgewise_feature_drift_psi gauge" in text


def test_openapi_documents_the_drift_view(drift_fleet: DriftFleet) -> None:
    spec = drift_fleet.client.get("/openapi.json").json()
    op = spec["paths"]["/api/v1/drift/{model}"]["get"]
    assert {"model", "version", "window", "buckets", "by", "group_by", "top",
            "limit"} <= {p["name"] for p in op["parameters"]}
    assert "DriftView" in json.dumps(op["responses"]["200"])


def test_no_windows_in_the_range_is_empty_with_a_reason(tmp_path: Path) -> None:
    c = make_controller(tmp_path)
    try:
        populate(c, 1_700_000_000.0)  # an hour of history, long ago
        view = c.drift.view(MODEL, 2, 1_800_000_000.0, 3600, 12)
        assert (view["status"], view["windows"], view["has_profile"]) == ("no_windows", 0, True)
        assert view["reason"] == f"no metrics window of {MODEL}:2 ended in this range"
        assert [f["name"] for f in view["features"]] == [*FEATURES, PREDICTION]
        assert all(p["psi"] is None and p["n"] == 0 for f in view["features"] for p in f["points"])
        assert view["markers"] == []
        stale = c.drift.view(MODEL, 2, 1_700_000_000.0, 600, 10, by="device")
        assert stale["skipped"] == {OTHER_PROFILE: STALE_WINDOWS} and stale["status"] == "ok"
    finally:
        c.db.dispose()


def test_only_buckets_that_gained_windows_are_read_again(tmp_path: Path) -> None:
    c = make_controller(tmp_path)
    try:
        now = 1_800_000_007.0  # not on a bucket edge: the newest windows end before the plan
        populate(c, now)
        reader = BucketTallies(c.db)
        reference = Reference.from_profile(PROFILE)
        assert reference is not None
        plan = plan_buckets(now, 3600, 12)
        first = reader.read(MODEL, 2, reference, plan)
        assert first.seen == 4 * 60 - int(SWITCH_AGO // WINDOW_S) + STALE_WINDOWS
        again = reader.read(MODEL, 2, reference, plan)
        assert all(a is b for a, b in zip(first.tallies, again.tallies, strict=True))
        late = window(PROFILE, now - 200, seed=5)  # a late window for the last full bucket
        c.telemetry.store_batch("d-3", TelemetryBatch(1, 1, [
            {"kind": "metrics", "ts": now, "model": MODEL, "version": 2, "summary": late,
             "seq": 1}], epoch=77), now + 1)
        changed = plan.index(late["end_ts"])
        after = reader.read(MODEL, 2, reference, plan)
        for i, (a, b) in enumerate(zip(first.tallies, after.tallies, strict=True)):
            assert (a is b) == (i != changed), i
        assert after.tallies[changed].windows == first.tallies[changed].windows + 1
        assert after.seen == first.seen + 1 and after.skipped == first.skipped
    finally:
        c.db.dispose()


def test_a_range_of_too_many_windows_reads_the_newest_buckets(tmp_path: Path) -> None:
    c = make_controller(tmp_path)
    try:
        now = 1_800_000_000.0
        populate(c, now)
        reference = Reference.from_profile(PROFILE)
        assert reference is not None
        plan = plan_buckets(now, 3600, 12)
        small = BucketTallies(c.db, max_windows=40)
        read = small.read(MODEL, 2, reference, plan)
        counted = [t.windows for t in read.tallies]
        assert read.truncated and 0 < sum(counted) <= 40
        assert counted[-1] > 0 and counted[0] == 0  # the newest first
        more = small.read(MODEL, 2, reference, plan)  # the next call goes further back
        assert sum(t.windows for t in more.tallies) > sum(counted)
        tiny = BucketTallies(c.db, memo_bytes=1)  # keeps at most one bucket between calls
        tiny.read(MODEL, 2, reference, plan)
        assert len(tiny._memo) == 1
    finally:
        c.db.dispose()
