"""Markers on a drift chart: version changes from the devices' history, rollouts, deployments,
alerts; events of one kind and subject in one time bucket become one marker."""

from __future__ import annotations

from controller.monitoring.drift_markers import (
    ALERT_CLEARED,
    ALERT_FIRED,
    DEPLOYMENT,
    ROLLOUT_ENDED,
    ROLLOUT_STARTED,
    VERSION_STARTED,
    VERSION_STOPPED,
    Event,
    HistoryRow,
    alert_events,
    coalesce,
    deployment_events,
    rollout_events,
    version_changes,
)
from controller.timebuckets import BucketPlan

PLAN = BucketPlan(start=1000.0, size=60.0, count=10)  # [1000, 1600)


def test_a_version_starts_and_stops_where_the_active_version_changes() -> None:
    history = {
        # before the range on v1 (the row before "since" is context, not a marker), then v2,
        # a state-only report on v2, then v3
        "a": [HistoryRow(900.0, "m", 1), HistoryRow(1100.0, "m", 2), HistoryRow(1150.0, "m", 2),
              HistoryRow(1400.0, "m", 3)],
        "b": [HistoryRow(1200.0, "m", 2)],  # its first report ever
        "c": [HistoryRow(950.0, "m", 2), HistoryRow(1300.0, None, None)],  # removed
        "d": [HistoryRow(1700.0, "m", 2)],  # after the range
    }
    events = version_changes(history, "m", 2, 1000.0, 1600.0)
    assert [(e.device_id, e.kind, e.ts, e.detail) for e in events] == [
        ("a", VERSION_STARTED, 1100.0, "was m:1"), ("a", VERSION_STOPPED, 1400.0, "now m:3"),
        ("b", VERSION_STARTED, 1200.0, "first report"),
        ("c", VERSION_STOPPED, 1300.0, "now no model")]
    assert version_changes({"a": [HistoryRow(900.0, "m", 2)]}, "m", 2, 1000.0, 1600.0) == []


def test_rollouts_start_and_end_deployments_and_alerts_happen() -> None:
    rollouts = [
        {"id": 1, "name": "canary", "model": "m", "version": 2, "status": "completed",
         "created_at": 1010.0, "updated_at": 1500.0},
        {"id": 2, "name": "", "model": "m", "version": 3, "status": "running",
         "created_at": 1020.0, "updated_at": 1590.0},
        {"id": 3, "name": "old", "model": "m", "version": 1, "status": "aborted",
         "created_at": 10.0, "updated_at": 1030.0},
    ]
    assert [(e.kind, e.what) for e in rollout_events(rollouts, 1000.0, 1600.0)] == [
        (ROLLOUT_STARTED, "rollout canary of m:2 started"),
        (ROLLOUT_ENDED, "rollout canary of m:2 completed"),
        (ROLLOUT_STARTED, "rollout #2 of m:3 started"),
        (ROLLOUT_ENDED, "rollout old of m:1 aborted")]
    deployments = [{"deployment_id": "dep-1", "model": "m", "version": 2, "created_at": 1040.0},
                   {"deployment_id": "dep-0", "model": "m", "version": 1, "created_at": 5.0}]
    assert [e.what for e in deployment_events(deployments, 1000.0, 1600.0)] == [
        "deployment dep-1 of m:2"]
    alerts = [{"ts": 1050.0, "kind": "drift", "device_id": "a", "event": "fired",
               "detail": "x1 drifted"},
              {"ts": 1450.0, "kind": "drift", "device_id": "a", "event": "cleared",
               "detail": ""}]
    events = alert_events(alerts, 1000.0, 1600.0)
    assert [(e.kind, e.what, e.alert_kind) for e in events] == [
        (ALERT_FIRED, "drift alert fired", "drift"), (ALERT_CLEARED, "drift alert cleared", "drift")]
    assert [e.kind for e in deployment_events(deployments, 1000.0, 1600.0)] == [DEPLOYMENT]


def test_events_of_one_kind_in_one_bucket_become_one_marker() -> None:
    fired = [Event(1000.0 + i, ALERT_FIRED, "drift alert fired", f"pi-{i:02d}", "x1 drifted",
                   "drift") for i in range(8)]
    later = Event(1130.0, ALERT_FIRED, "drift alert fired", "pi-00", "x1 drifted", "drift")
    cleared = Event(1010.0, ALERT_CLEARED, "drift alert cleared", "pi-09", "", "drift")
    outside = Event(2000.0, ALERT_FIRED, "drift alert fired", "pi-00")
    markers = coalesce([*reversed(fired), later, cleared, outside], PLAN)
    assert [(m["ts"], m["kind"], m["count"]) for m in markers] == [
        (1000.0, ALERT_FIRED, 8), (1010.0, ALERT_CLEARED, 1), (1130.0, ALERT_FIRED, 1)]
    many = markers[0]
    assert many["devices"] == ["pi-00", "pi-01", "pi-02", "pi-03", "pi-04"]
    assert many["text"] == ("drift alert fired on 8 devices: pi-00, pi-01, pi-02, pi-03, pi-04 "
                            "and 3 more")
    assert many["alert_kind"] == "drift"
    assert markers[2]["text"] == "drift alert fired on pi-00 (x1 drifted)"
    assert markers[1]["text"] == "drift alert cleared on pi-09"


def test_markers_without_devices_and_the_limit() -> None:
    events = [Event(1000.0 + 60 * i, ROLLOUT_STARTED, f"rollout r{i} of m:2 started")
              for i in range(10)]
    markers = coalesce(events, PLAN, limit=3)
    assert [m["text"] for m in markers] == [f"rollout r{i} of m:2 started" for i in (7, 8, 9)]
    assert markers[0]["devices"] == [] and markers[0]["alert_kind"] is None
    twice = coalesce([events[0], events[0]], PLAN)
    assert twice[0]["text"] == "rollout r0 of m:2 started (2×)"
