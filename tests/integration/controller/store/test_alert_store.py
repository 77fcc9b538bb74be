"""Alert evaluation over stored metrics windows, on both backends: each window judged once,
states survive a new store (a controller restart), history and retraining runs recorded."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from controller.fleet.store import FleetStore
from controller.fleet.telemetry_store import TelemetryStore
from controller.models.registry import ModelRegistry
from controller.monitoring import AlertKind, AlertRules
from controller.monitoring.alert_store import AlertStore
from controller.monitoring.metrics_store import MetricsStore
from controller.storage.db import Database
from edgewise_wire import ModelRef, Reported, TelemetryBatch
from tests.integration.controller.store.conftest import build_manifest
from tests.integration.controller.store.test_metrics_store import (
    PROFILE,
    metrics_record,
    window_summary,
)

RULES = AlertRules(fire_after=3, clear_after=2, accuracy_min_labels=20, silent_after_s=600)


@pytest.fixture
def setup(db: Database, registry: ModelRegistry) -> tuple[TelemetryStore, AlertStore]:
    manifest = dataclasses.replace(build_manifest(b"artifact-v1"), reference_profile=PROFILE,
                                   parity={"artifact_accuracy": 0.97})
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


def test_drift_and_accuracy_fire_after_three_bad_windows_on_the_bad_device_only(
        setup: tuple[TelemetryStore, AlertStore]) -> None:
    tel, alerts = setup
    feed(tel, "healthy", 3)
    feed(tel, "drifting", 2, shift=2.0)
    feed(tel, "wrong", 3, wrong=1.0)
    first = alerts.evaluate(now=10.0, rules=RULES)
    # "drifting" has only two bad windows yet
    assert (AlertKind.DRIFT, "drifting") not in {(e.kind, e.device_id) for e in first}
    feed(tel, "drifting", 1, start_seq=3, shift=2.0)
    events = first + alerts.evaluate(now=11.0, rules=RULES)
    fired = {(e.kind, e.device_id) for e in events}
    assert all(e.event == "fired" for e in events)
    # the shifted device's predictions move with its input, so its accuracy may drop too;
    # the healthy one raises nothing and the mislabelled one no drift
    assert (AlertKind.DRIFT, "drifting") in fired and (AlertKind.ACCURACY, "wrong") in fired
    assert not {f for f in fired if f[1] == "healthy"}
    assert (AlertKind.DRIFT, "wrong") not in fired
    assert alerts.evaluate(now=12.0, rules=RULES) == []  # every window was judged once

    firing = {(a["kind"], a["device_id"]) for a in alerts.alerts()}
    assert firing == {(k.value, d) for k, d in fired}
    wrong = next(a for a in alerts.alerts(kind="accuracy") if a["device_id"] == "wrong")
    assert wrong["value"] == 0.0 and abs(wrong["threshold"] - 0.87) < 1e-9
    assert "reference 97.0%" in wrong["detail"]
    history = alerts.history()
    assert {(h["kind"], h["device_id"], h["event"]) for h in history} == \
        {(k.value, d, "fired") for k, d in fired}
    assert history[0]["context"]["model"] == "iris"


def test_states_survive_a_restart_and_clear_after_good_windows(
        db: Database, setup: tuple[TelemetryStore, AlertStore]) -> None:
    tel, alerts = setup
    feed(tel, "d", 3, shift=2.0)
    assert [e.event for e in alerts.evaluate(now=1.0, rules=RULES)][:1] == ["fired"]
    restarted = AlertStore(db, MetricsStore(db))  # a new controller process
    feed(tel, "d", 1, start_seq=10)
    assert restarted.evaluate(now=2.0, rules=RULES) == []  # one good window is not enough
    feed(tel, "d", 1, start_seq=11)
    cleared = restarted.evaluate(now=3.0, rules=RULES)
    assert [(e.kind, e.event) for e in cleared] == [(AlertKind.DRIFT, "cleared")]
    assert restarted.alerts(kind="drift") == []
    assert restarted.alerts(include_cleared=True, kind="drift")[0]["firing"] is False


def test_a_device_gone_silent_fires(db: Database, setup: tuple[TelemetryStore, AlertStore]) -> None:
    _, alerts = setup
    FleetStore(db).set_reported("quiet", Reported(state="active",
                                                  active=ModelRef("iris", 1, "a" * 64), ts=10.0))
    assert alerts.evaluate(now=100.0, rules=RULES) == []
    events = alerts.evaluate(now=10.0 + RULES.silent_after_s + 1, rules=RULES)
    assert [(e.kind, e.device_id, e.event) for e in events] == [(AlertKind.SILENT, "quiet",
                                                                 "fired")]


def test_concurrent_evaluations_judge_each_window_once(
        db: Database, setup: tuple[TelemetryStore, AlertStore]) -> None:
    tel, _ = setup
    feed(tel, "d", 3, shift=2.0)
    replicas = [AlertStore(db, MetricsStore(db)) for _ in range(3)]
    barrier = threading.Barrier(len(replicas))
    results: list[int] = []

    def run(store: AlertStore) -> None:
        barrier.wait()
        results.append(len([e for e in store.evaluate(now=5.0, rules=RULES)
                            if e.kind is AlertKind.DRIFT]))

    threads = [threading.Thread(target=run, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [0, 0, 1]


def test_retrain_runs_are_recorded(setup: tuple[TelemetryStore, AlertStore]) -> None:
    _, alerts = setup
    assert alerts.last_retrain("accuracy", "iris") is None
    run_id = alerts.start_retrain("accuracy", "iris", 1, "command", {})
    alerts.finish_retrain(run_id, "ok", "registered iris:2", 2, {"kind": "accuracy"})
    (run,) = alerts.retrain_runs()
    assert run["status"] == "ok" and run["new_version"] == 2 and run["context"]["kind"] == "accuracy"
    assert alerts.last_retrain("accuracy", "iris") is not None
