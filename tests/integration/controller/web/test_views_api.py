"""The view endpoints over a known fleet (tests/harness/web_fleet.py), on SQLite and PostgreSQL:
paging and filters, history, errors, series, overview, model summary, deployment progress,
/metrics, and 422 for every kind of bad parameter."""

from __future__ import annotations

import pytest

from tests.harness.web_fleet import Fleet


def _ids(fleet: Fleet, **params: object) -> tuple[list[str], int]:
    r = fleet.client.get("/api/v1/fleet/devices", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    return [d["device_id"] for d in body["items"]], body["total"]


def test_device_pages_cover_the_fleet_once_in_order(fleet: Fleet) -> None:
    seen: list[str] = []
    for offset in range(0, 6, 2):
        ids, total = _ids(fleet, limit=2, offset=offset)
        assert total == 5
        seen += ids
    assert seen == ["b-1", "b-2", "l-1", "o-1", "x-1"]
    assert _ids(fleet, limit=2, offset=10) == ([], 5)
    assert _ids(fleet, sort="-device_id", limit=1)[0] == ["x-1"]


def test_device_filters_combine(fleet: Fleet) -> None:
    assert _ids(fleet, q="B-") == (["b-1", "b-2"], 2)  # case-insensitive part of the id
    assert _ids(fleet, q="%") == ([], 0)  # LIKE wildcards are taken literally
    assert _ids(fleet, online="false") == (["o-1"], 1)
    assert _ids(fleet, model="iris")[1] == 4
    assert _ids(fleet, model="iris:2") == (["b-2"], 1)
    assert _ids(fleet, state="failed") == (["l-1"], 1)
    assert _ids(fleet, selector="site=berlin,hw in (pi5)") == (["b-2"], 1)
    assert _ids(fleet, selector="!site") == (["x-1"], 1)
    assert _ids(fleet, selector="site in (berlin,oslo)", online="true", limit=1) == (["b-1"], 2)


def test_device_rows_carry_state_labels_and_telemetry_counts(fleet: Fleet) -> None:
    row = fleet.client.get("/api/v1/fleet/devices", params={"q": "b-1"}).json()["items"][0]
    assert row["labels"] == {"site": "berlin", "hw": "pi4"}
    assert (row["active_model"], row["active_version"], row["state"]) == ("iris", 1, "active")
    assert (row["predictions"], row["feedback"]) == (10, 6)
    assert row["accuracy"] == pytest.approx(4 / 6)


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 5001}, {"offset": -1}, {"offset": 10**12}, {"limit": "many"},
    {"model": "iris:x"}, {"model": ":2"}, {"state": "sleeping"}, {"selector": "site="},
    {"selector": "site in berlin"}, {"sort": "labels"}, {"online": "perhaps"},
    {"q": "x" * 129},
])
def test_bad_device_list_parameters_are_422(fleet: Fleet, params: dict[str, object]) -> None:
    r = fleet.client.get("/api/v1/fleet/devices", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_a_bad_selector_says_where(fleet: Fleet) -> None:
    r = fleet.client.get("/api/v1/fleet/devices", params={"selector": "site=berlin,,hw=pi4"})
    assert r.status_code == 422
    assert "position 12" in r.json()["detail"]


def test_history_records_each_change_once_newest_first(fleet: Fleet) -> None:
    rows = fleet.client.get("/api/v1/devices/l-1/history").json()
    assert [r["state"] for r in rows] == ["failed", "downloading", "active"]
    assert rows[0]["error"] == "smoke test failed: labels differ"
    assert (rows[0]["target_model"], rows[0]["target_version"]) == ("iris", 2)
    assert (rows[0]["model"], rows[0]["version"]) == ("iris", 1)
    assert len(fleet.client.get("/api/v1/devices/l-1/history", params={"limit": 1}).json()) == 1


def test_errors_merge_inference_and_update_failures(fleet: Fleet) -> None:
    b1 = fleet.client.get("/api/v1/devices/b-1/errors").json()
    assert [(e["source"], e["message"]) for e in b1] == [("inference", "invalid_input")]
    l1 = fleet.client.get("/api/v1/devices/l-1/errors").json()
    assert [(e["source"], e["model"], e["version"]) for e in l1] == [("update", "iris", 2)]


@pytest.mark.parametrize("path", ["history", "errors", "series"])
def test_device_views_of_an_unknown_device_are_404(fleet: Fleet, path: str) -> None:
    r = fleet.client.get(f"/api/v1/devices/nobody/{path}")
    assert r.status_code == 404
    assert "nobody" in r.json()["detail"]


def test_series_buckets_the_devices_telemetry_and_drift(fleet: Fleet) -> None:
    r = fleet.client.get("/api/v1/devices/b-1/series", params={"window": 600, "buckets": 10})
    s = r.json()
    assert s["bucket_s"] == 60 and s["start"] % 60 == 0
    # the server reads its own clock, a little after the fixture's: the window is ten whole
    # buckets ending at or after the fixture's now, whichever minute the request fell in
    assert s["end"] - s["start"] >= 600 and s["end"] >= fleet.now
    assert s["start"] <= fleet.now - 600 + 60
    points = s["points"]
    assert sum(p["predictions"] for p in points) == 10
    assert sum(p["labelled"] for p in points) == 6
    assert sum(p["errors"] for p in points) == 1
    assert max(p["max_latency_ms"] or 0 for p in points) == 10.0
    assert s["drift_available"] and s["metrics_windows"] == 1
    drift = [p["drift_psi"] for p in points if p["drift_psi"] is not None]
    assert len(drift) == 1 and drift[0] > 1.0  # the window's first feature moved by 2 sd
    quiet = fleet.client.get("/api/v1/devices/x-1/series").json()
    assert not quiet["drift_available"]
    assert all(p["predictions"] == 0 and p["accuracy"] is None for p in quiet["points"])


def test_fleet_series_can_be_narrowed_to_a_version(fleet: Fleet) -> None:
    every = fleet.client.get("/api/v1/fleet/series", params={"window": 900}).json()
    v2 = fleet.client.get("/api/v1/fleet/series", params={"window": 900,
                                                          "model": "iris:2"}).json()
    assert sum(p["predictions"] for p in every["points"]) == 15
    assert sum(p["predictions"] for p in v2["points"]) == 5


@pytest.mark.parametrize("path, params", [
    ("/api/v1/devices/b-1/series", {"window": 59}),
    ("/api/v1/devices/b-1/series", {"window": 31 * 86400}),
    ("/api/v1/devices/b-1/series", {"buckets": 1}),
    ("/api/v1/devices/b-1/series", {"buckets": 501}),
    ("/api/v1/fleet/series", {"model": "iris:two"}),
    ("/api/v1/fleet/overview", {"group_by": "site name"}),
    ("/api/v1/fleet/overview", {"window": "an hour"}),
    ("/api/v1/devices/b-1/history", {"limit": 0}),
    ("/api/v1/devices/b-1/errors", {"limit": 501}),
    ("/api/v1/models", {"limit": 0}),
    ("/api/v1/models/iris/summary", {"group_by": ""}),
    ("/api/v1/deployments", {"sort": "name"}),
    ("/metrics", {"group_by": "a b"}),
    ("/metrics", {"window": 10}),
])
def test_bad_view_parameters_are_422(fleet: Fleet, path: str, params: dict[str, object]) -> None:
    assert fleet.client.get(path, params=params).status_code == 422


def test_overview_counts_versions_groups_and_drift(fleet: Fleet) -> None:
    o = fleet.client.get("/api/v1/fleet/overview", params={"window": 900}).json()
    assert (o["devices"], o["online"], o["offline"]) == (5, 4, 1)
    assert o["states"] == {"active": 3, "failed": 1, "idle": 1}
    assert [(v["model"], v["version"], v["devices"], v["online"]) for v in o["versions"]] == [
        ("iris", 1, 3, 2), ("iris", 2, 1, 1)]
    assert o["label_keys"] == ["hw", "site"]
    groups = {g["group"]: g for g in o["groups"]}
    assert set(groups) == {"", "berlin", "lisbon", "oslo"}
    berlin = groups["berlin"]
    assert (berlin["devices"], berlin["online"], berlin["predictions"]) == (2, 2, 15)
    assert berlin["versions"] == {"iris:1": 1, "iris:2": 1}
    assert berlin["drift_psi"] > 1.0 and berlin["drifting"] == 1
    assert groups["lisbon"]["failed"] == 1 and groups["oslo"]["offline"] == 1
    assert groups["oslo"]["drift_psi"] is None
    assert o["figures"]["predictions"] == 15 and o["figures"]["errors"] == 1
    assert o["drift_available"] and o["figures"]["drifting"] == 1
    assert o["alerts"]["available"] and o["alerts"]["count"] == 0


def test_overview_groups_by_any_label(fleet: Fleet) -> None:
    o = fleet.client.get("/api/v1/fleet/overview", params={"group_by": "hw"}).json()
    assert {g["group"]: g["devices"] for g in o["groups"]} == {"": 3, "pi4": 1, "pi5": 1}


def test_models_are_paged_with_a_total(fleet: Fleet) -> None:
    r = fleet.client.get("/api/v1/models", params={"limit": 1})
    assert r.status_code == 200 and r.headers["X-Total-Count"] == "1"
    assert [(m["name"], m["versions"], m["latest_version"]) for m in r.json()] == [("iris", 2, 2)]
    none = fleet.client.get("/api/v1/models", params={"q": "wine"})
    assert none.json() == [] and none.headers["X-Total-Count"] == "0"
    assert fleet.client.get("/api/v1/models", params={"offset": 1}).json() == []


def test_model_summary_has_parity_placement_and_figures(fleet: Fleet) -> None:
    s = fleet.client.get("/api/v1/models/iris/summary").json()
    assert s["task"] == "classification"
    v1, v2 = s["versions"]
    assert v1["parity"]["max_abs_diff"] == 2.5e-7 and v1["parity"]["artifact_accuracy"] == 0.95
    assert (v1["running"], v1["online"], v1["groups"]) == (3, 2, {"berlin": 1, "lisbon": 1,
                                                                  "oslo": 1})
    assert (v2["running"], v2["desired"], v2["failed"]) == (1, 2, 1)
    assert v1["figures"]["predictions"] == 10 and v2["figures"]["predictions"] == 5
    assert v1["figures"]["drift_psi"] > 1.0 > v2["figures"]["drift_psi"]
    assert fleet.client.get("/api/v1/models/wine/summary").status_code == 404


def test_deployment_progress(fleet: Fleet) -> None:
    d = fleet.client.get("/api/v1/deployments/dep-v2").json()
    assert (d["targeted"], d["active"], d["failed"], d["installing"], d["waiting"]) == (
        2, 1, 1, 0, 0)
    assert d["finished"]
    assert d["failed_devices"] == [{"device_id": "l-1",
                                    "error": "smoke test failed: labels differ"}]
    listed = fleet.client.get("/api/v1/deployments", params={"sort": "-created_at"})
    assert listed.headers["X-Total-Count"] == "1" and listed.json()[0]["active"] == 1
    assert fleet.client.get("/api/v1/deployments/dep-nope").status_code == 404


def test_metrics_for_prometheus(fleet: Fleet) -> None:
    r = fleet.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'edgewise_devices{group="oslo",online="false"} 1.0' in text
    assert 'edgewise_devices_running{group="berlin",model="iris",version="2"} 1.0' in text
    assert 'edgewise_devices_failed{group="lisbon"} 1.0' in text
    assert 'edgewise_predictions_total{group="berlin",model="iris",version="1"} 10.0' in text
    assert 'edgewise_correct_predictions_total{group="berlin",model="iris",version="1"} 4.0' in text
    assert 'edgewise_prediction_errors_total{group="berlin"} 1.0' in text
    assert 'edgewise_latency_mean_seconds{group="berlin",model="iris",version="1"} 0.0055' in text
    assert 'edgewise_drift_psi{group="berlin",model="iris",version="1"}' in text
    assert "edgewise_alerts_firing" in text
    # not measured is left out, never 0: oslo sent nothing
    assert 'edgewise_accuracy{group="oslo"' not in text
    by_hw = fleet.client.get("/metrics", params={"group_by": "hw"}).text
    assert 'edgewise_devices{group="pi5",online="true"} 1.0' in by_hw
