"""Alert evaluation over stored metrics windows, on both backends: each window judged once,
states survive a new store (a controller restart), history and retraining runs recorded."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from controller.errors import NotFoundError
from controller.fleet.store import FleetStore
from controller.fleet.telemetry_store import TelemetryStore
from controller.models.registry import ModelRegistry
from controller.monitoring import AlertEvent, AlertKind, AlertRules
from controller.monitoring.alert_store import AlertStore, DetectionSettings
from controller.monitoring.metrics_store import MetricsStore
from controller.monitoring.retrain_runs import RetrainRuns
from controller.storage.db import Database
from edgewise_wire import ModelRef, Reported, TelemetryBatch
from tests.integration.controller.store.conftest import build_manifest
from tests.integration.controller.store.test_metrics_store import (
    PROFILE,
    metrics_record,
    window_summary,
)

# clear_after (window rules, and the stateless tests) differs from the detectors' own
# drift_clear_after (3), so a test can tell which one cleared an alert
RULES = AlertRules(fire_after=3, clear_after=5, silent_after_s=600)
SEGMENTS_OFF = DetectionSettings(segment_label="")


@pytest.fixture
def setup(db: Database, registry: ModelRegistry) -> tuple[TelemetryStore, AlertStore]:
    manifest = dataclasses.replace(build_manifest(b"artifact-v1"), reference_profile=PROFILE,
                                   parity={"artifact_accuracy": 0.97, "n": 2000})
    registry.register(manifest, b"artifact-v1")
    metrics = MetricsStore(db)
    return TelemetryStore(db, metrics.store_windows), AlertStore(db, metrics)


def feed(tel: TelemetryStore, device: str, windows: int, start_seq: int = 1,
         **kwargs: float) -> None:
    records = [metrics_record(start_seq + i, window_summary(60.0 * (start_seq + i),
                                                            seed=start_seq + i, **kwargs))
               for i in range(windows)]
    tel.store_batch(device, TelemetryBatch(start_seq, start_seq + windows - 1, records, epoch=1),
                    received_at=1.0)


def evaluate(alerts: AlertStore, now: float,
             detection: DetectionSettings = SEGMENTS_OFF) -> list[AlertEvent]:
    return alerts.evaluate(now=now, rules=RULES, detection=detection)


def test_a_large_shift_and_a_proven_accuracy_loss_fire_in_the_first_window_on_those_devices(
        setup: tuple[TelemetryStore, AlertStore]) -> None:
    tel, alerts = setup
    feed(tel, "healthy", 3)
    feed(tel, "drifting", 1, shift=2.0)
    feed(tel, "wrong", 1, wrong=1.0)
    events = evaluate(alerts, 10.0)
    fired = {(e.kind, e.device_id) for e in events}
    assert all(e.event == "fired" for e in events)
    # the shifted device's predictions move with its input, so its accuracy may drop too;
    # the healthy one raises nothing and the mislabelled one no drift
    assert (AlertKind.DRIFT, "drifting") in fired and (AlertKind.ACCURACY, "wrong") in fired
    assert not {f for f in fired if f[1] == "healthy"}
    assert (AlertKind.DRIFT, "wrong") not in fired
    assert evaluate(alerts, 12.0) == []  # every window was judged once

    firing = {(a["kind"], a["device_id"]) for a in alerts.alerts()}
    assert firing == {(k.value, d) for k, d in fired}
    wrong = next(a for a in alerts.alerts(kind="accuracy") if a["device_id"] == "wrong")
    assert wrong["value"] >= wrong["threshold"] and "error" in wrong["detail"]
    history = alerts.history()
    assert {(h["kind"], h["device_id"], h["event"]) for h in history} == \
        {(k.value, d, "fired") for k, d in fired}
    drift = next(h for h in history if h["kind"] == "drift")
    assert drift["context"]["model"] == "iris"
    explanation = drift["context"]["decision"]["explanation"]
    assert explanation["alpha"] == 1e-7 and "per row" in explanation["false_alarm_rate"]


def test_no_change_raises_no_alert_over_many_windows(
        setup: tuple[TelemetryStore, AlertStore]) -> None:
    tel, alerts = setup
    for device in ("a", "b", "c"):
        feed(tel, device, 20)
    assert evaluate(alerts, 10.0) == []


def test_detector_states_survive_a_restart_and_the_test_clears_the_alert(
        db: Database, setup: tuple[TelemetryStore, AlertStore]) -> None:
    tel, alerts = setup
    feed(tel, "d", 1, shift=2.0)
    assert [(e.kind, e.event) for e in evaluate(alerts, 1.0)][:1] == [(AlertKind.DRIFT, "fired")]
    assert alerts.watches("d")[0]["state"]["drift"] is not None
    restarted = AlertStore(db, MetricsStore(db))  # a new controller process
    for seq in (10, 11):  # one quiet window per evaluation: one update of the detector each
        feed(tel, "d", 1, start_seq=seq)
        assert [e for e in evaluate(restarted, float(seq)) if e.kind is AlertKind.DRIFT] == []
    feed(tel, "d", 1, start_seq=12)
    cleared = [e for e in evaluate(restarted, 12.0) if e.kind is AlertKind.DRIFT]
    # the detector's own drift_clear_after (3 quiet windows), not RULES.clear_after (5): its
    # state came back from the database
    assert [(e.kind, e.event) for e in cleared] == [(AlertKind.DRIFT, "cleared")]
    assert restarted.alerts(kind="drift") == []
    assert restarted.alerts(include_cleared=True, kind="drift")[0]["firing"] is False


def _running(db: Database, device: str, site: str) -> None:
    FleetStore(db).set_reported(device, Reported(
        state="active", active=ModelRef("iris", 1, "a" * 64), labels={"site": site}, ts=1.0))


def test_a_small_shift_on_every_device_of_a_group_is_seen_by_the_group_first(
        db: Database, setup: tuple[TelemetryStore, AlertStore]) -> None:
    tel, alerts = setup
    devices = [f"berlin-{i}" for i in range(10)]
    for i, device in enumerate(devices):
        _running(db, device, "berlin")
        feed(tel, device, 2, start_seq=1 + 10 * i, shift=0.2)
    events = evaluate(alerts, 10.0)
    fired = {(e.kind, e.device_id) for e in events if e.event == "fired"}
    assert (AlertKind.DRIFT, "group:site=berlin") in fired
    assert not {d for k, d in fired if k is AlertKind.DRIFT and not d.startswith("group:")}
    group = next(e for e in events if e.device_id == "group:site=berlin")
    assert group.context["scope"] == "group" and set(group.context["devices"]) == set(devices)


def test_a_group_less_accurate_than_the_rest_raises_a_segment_alert_once_per_period(
        db: Database, setup: tuple[TelemetryStore, AlertStore]) -> None:
    tel, alerts = setup
    for i in range(4):
        _running(db, f"oslo-{i}", "oslo")
        _running(db, f"rome-{i}", "rome")
        feed(tel, f"oslo-{i}", 3, start_seq=1 + 10 * i, wrong=0.15)  # windows end within the
        feed(tel, f"rome-{i}", 3, start_seq=1 + 10 * i)  # first hour (60 s each)
    detection = DetectionSettings(segment_label="site", segment_period_s=3600.0)
    events = evaluate(alerts, 3600.0 + 5.0, detection)
    segment = [e for e in events if e.kind is AlertKind.SEGMENT]
    assert [(e.device_id, e.event) for e in segment] == [("group:site=oslo", "fired")]
    assert "Fisher" in segment[0].detail
    assert not [e for e in evaluate(alerts, 3600.0 + 50.0, detection)
                if e.kind is AlertKind.SEGMENT]  # the same period is judged once


def test_a_device_gone_silent_fires(db: Database, setup: tuple[TelemetryStore, AlertStore]) -> None:
    _, alerts = setup
    FleetStore(db).set_reported("quiet", Reported(state="active",
                                                  active=ModelRef("iris", 1, "a" * 64), ts=10.0))
    assert evaluate(alerts, 100.0) == []
    events = evaluate(alerts, 10.0 + RULES.silent_after_s + 1)
    assert [(e.kind, e.device_id, e.event) for e in events] == [(AlertKind.SILENT, "quiet",
                                                                 "fired")]


def test_concurrent_evaluations_judge_each_window_once(
        db: Database, setup: tuple[TelemetryStore, AlertStore]) -> None:
    tel, _ = setup
    feed(tel, "d", 1, shift=2.0)
    replicas = [AlertStore(db, MetricsStore(db)) for _ in range(3)]
    barrier = threading.Barrier(len(replicas))
    results: list[int] = []

    def run(store: AlertStore) -> None:
        barrier.wait()
        results.append(len([e for e in evaluate(store, 5.0)
                            if e.kind is AlertKind.DRIFT]))

    threads = [threading.Thread(target=run, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [0, 0, 1]


def test_retrain_runs_are_recorded(setup: tuple[TelemetryStore, AlertStore]) -> None:
    _, alerts = setup
    runs = RetrainRuns(alerts.db)
    assert runs.last_started("accuracy", "iris") is None
    run_id = runs.start("accuracy", "iris", 1, "command", {})
    runs.finish(run_id, "ok", "registered iris:2", 2, {"kind": "accuracy"})
    (run,) = runs.runs()
    assert run["status"] == "ok" and run["new_version"] == 2 and run["context"]["kind"] == "accuracy"
    assert runs.last_started("accuracy", "iris") is not None


def test_an_old_version_without_a_profile_is_not_watched_for_drift_and_says_so(
        db: Database, registry: ModelRegistry) -> None:
    manifest = dataclasses.replace(build_manifest(b"artifact-old"), reference_profile={},
                                   parity={})
    registry.register(manifest, b"artifact-old")
    metrics = MetricsStore(db)
    tel, alerts = TelemetryStore(db, metrics.store_windows), AlertStore(db, metrics)
    feed(tel, "old", 3, shift=3.0, wrong=1.0)  # a huge shift and every label wrong
    events = evaluate(alerts, 10.0)
    assert not [e for e in events if e.kind in (AlertKind.DRIFT, AlertKind.ACCURACY)]
    (watch,) = alerts.watches("old")
    assert "drift" in watch["state"]["missing"] and "error_rate" in watch["state"]["missing"]


def test_windows_too_small_or_unreadable_raise_no_alert(
        db: Database, setup: tuple[TelemetryStore, AlertStore]) -> None:
    tel, alerts = setup
    feed(tel, "tiny", 5, n=6)  # six rows a window: too few to judge alone, pooled instead
    assert evaluate(alerts, 10.0) == []
    (watch,) = alerts.watches("tiny")
    assert watch["state"]["stats"]["summaries"] == 5


def test_an_alert_event_is_explained_by_its_test_and_the_detectors_state(
        setup: tuple[TelemetryStore, AlertStore]) -> None:
    from controller.monitoring.cli import format_explanation

    tel, alerts = setup
    feed(tel, "drifting", 1, shift=2.0)
    evaluate(alerts, 10.0)
    (firing,) = [a for a in alerts.alerts() if a["kind"] == "drift"]
    doc = alerts.explain(firing["event_id"])
    assert doc["event"]["event"] == "fired" and doc["state"]["firing"] is True
    decision = doc["event"]["context"]["decision"]
    assert decision["fired"] and decision["score"] >= decision["threshold"]
    assert doc["detectors"]["scope"] == "device" and doc["detectors"]["drift"]
    text = format_explanation({**doc, "settings": {"detectors": {"drift_alpha": 1e-7}}})
    assert "false alarm rate" in text and "at most 1e-07 per row" in text
    assert "evidence" in text and "drift_alpha" in text
    with pytest.raises(NotFoundError):
        alerts.explain(10**9)
