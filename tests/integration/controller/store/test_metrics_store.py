"""Metrics windows at the controller, on both backends: stored once, keyed by epoch, added up per
device, version, label group and fleet exactly as merge_summaries would; version_figures for
the rollout gates; the revision that introduced epochs keeps existing telemetry."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from controller.fleet.store import FleetStore
from controller.fleet.telemetry_store import TelemetryStore
from controller.models.registry import ModelRegistry
from controller.monitoring.metrics_store import NO_FIGURES, MetricsStore, VersionFigures
from controller.storage import migrator
from controller.storage.db import Database
from controller.storage.tables import devices, metrics, telemetry
from edgewise_monitoring import MonitoringWindow, merge_summaries
from edgewise_wire import ModelRef, Reported, TelemetryBatch
from tests.harness.profiles import assert_close, make_profile
from tests.integration.controller.store.conftest import build_manifest

REFERENCE = np.random.default_rng(0).normal(size=(5000, 2))
PROFILE = make_profile(REFERENCE, (REFERENCE[:, 0] > 0).astype(int), labels=[0, 1])


def window_summary(start: float, n: int = 400, *, shift: float = 0.0, wrong: float = 0.0,
                   seed: int = 1, embed: bool = False) -> dict[str, Any]:
    """A real device window: n rows (first feature shifted by ``shift`` sd), n/2 labels of which
    a share ``wrong`` disagree with the prediction."""
    rng = np.random.default_rng(seed)
    w = MonitoringWindow(PROFILE, "classification", [0, 1], start_ts=start, embed_reference=embed)
    x = rng.normal(size=(n, 2))
    x[:, 0] += shift
    pred = (x[:, 0] > 0).astype(int)
    p1 = 1 / (1 + np.exp(-4 * x[:, 0]))
    w.observe(x, pred, np.column_stack([1 - p1, p1]), rng.uniform(1.0, 3.0, size=n))
    k = n // 2
    truth = np.where(rng.random(k) < wrong, 1 - pred[:k], pred[:k])
    w.observe_feedback(pred[:k], truth)
    return w.summary(start + 60.0)


def metrics_record(seq: int, summary: dict[str, Any], model: str = "iris",
                   version: int = 1) -> dict[str, Any]:
    return {"seq": seq, "kind": "metrics", "ts": summary["end_ts"], "model": model,
            "version": version, "summary": summary}


@pytest.fixture
def stores(db: Database, registry: ModelRegistry) -> tuple[TelemetryStore, MetricsStore]:
    manifest = dataclasses.replace(build_manifest(b"artifact-v1"), reference_profile=PROFILE,
                                   parity={"artifact_accuracy": 0.97})
    registry.register(manifest, b"artifact-v1")
    store = MetricsStore(db)
    return TelemetryStore(db, store.store_windows), store


def put(tel: TelemetryStore, device: str, seq: int, summary: dict[str, Any],
        epoch: int = 7) -> int:
    return tel.store_batch(device, TelemetryBatch(seq, seq, [metrics_record(seq, summary)],
                                                  epoch=epoch), received_at=1.0)


def test_windows_are_stored_once_and_aggregate_like_merge_summaries(
        stores: tuple[TelemetryStore, MetricsStore]) -> None:
    tel, store = stores
    originals = {"a": [window_summary(0, seed=1), window_summary(60, seed=2)],
                 "b": [window_summary(0, seed=3, shift=1.0)]}
    seq = 0
    for device, summaries in originals.items():
        for s in summaries:
            seq += 1
            assert put(tel, device, seq, s) == 1
            assert put(tel, device, seq, s) == 0  # a replayed batch adds nothing
    assert store.count() == 3 and tel.count(kind="metrics") == 3

    everything = [s for summaries in originals.values() for s in summaries]
    fleet = store.version_aggregate("iris", 1)
    expected = merge_summaries(everything, profile=PROFILE)
    assert_close(fleet["summary"]["derived"], expected["derived"])
    assert fleet["devices_reporting"] == 2 and fleet["windows"] == 3
    assert fleet["figures"]["predictions"] == 1200

    (device_a,) = store.device_aggregate("a")
    assert_close(device_a["summary"]["derived"],
                 merge_summaries(originals["a"], profile=PROFILE)["derived"])
    # the shifted device drifts, the other does not
    figures = store.version_aggregate("iris", 1, per_device=True)["devices"]
    assert figures["b"]["drifted"] is True and figures["a"]["drifted"] is False
    assert [w["window_start"] for w in store.windows("a")] == [60.0, 0.0]


def test_group_and_selector_aggregates_use_device_labels(
        db: Database, stores: tuple[TelemetryStore, MetricsStore]) -> None:
    tel, store = stores
    for i, (device, site) in enumerate([("a", "berlin"), ("b", "berlin"), ("c", "oslo")], 1):
        put(tel, device, i, window_summary(0, seed=i))
        FleetStore(db).set_reported(device, Reported(state="active", active=None,
                                                     labels={"site": site}, ts=2.0))
    put(tel, "d", 9, window_summary(0, seed=9))  # no labels at all
    groups = store.group_aggregate("iris", 1, "site")
    assert sorted(groups) == ["", "berlin", "oslo"]
    assert groups["berlin"]["devices_reporting"] == 2 and groups["oslo"]["windows"] == 1
    berlin = store.version_aggregate("iris", 1, selector="site=berlin")
    assert berlin["figures"]["predictions"] == groups["berlin"]["figures"]["predictions"] == 800


def test_version_figures_for_the_rollout_gates(
        stores: tuple[TelemetryStore, MetricsStore]) -> None:
    tel, store = stores
    put(tel, "good", 1, window_summary(0, wrong=0.0))
    put(tel, "bad", 2, window_summary(100, wrong=1.0, shift=2.0))
    put(tel, "bad", 3, window_summary(-500, wrong=0.0))  # ended before `since`: left out
    out = store.version_figures(["good", "bad", "silent"], "iris", 1, since=50.0)
    assert set(out) == {"good", "bad", "silent"}
    assert out["silent"] == NO_FIGURES
    good, bad = out["good"], out["bad"]
    assert isinstance(good, VersionFigures)
    assert good.accuracy == 1.0 and good.labelled == 200 and good.predictions == 400
    assert bad.accuracy == 0.0 and bad.labelled == 200
    assert good.p95_latency_ms is not None and 1.0 <= good.p95_latency_ms <= 3.2
    assert good.drift_psi is not None and bad.drift_psi is not None
    assert bad.drift_psi > 1.0 > 0.1 > good.drift_psi
    assert store.version_figures(["good"], "iris", 2, since=0.0) == {"good": NO_FIGURES}


def test_embedded_and_stripped_reference_windows_add_up(
        stores: tuple[TelemetryStore, MetricsStore]) -> None:
    tel, store = stores
    put(tel, "a", 1, window_summary(0, seed=1, embed=True))
    put(tel, "a", 2, window_summary(60, seed=2, embed=False))
    (agg,) = store.device_aggregate("a")
    assert agg["windows"] == 2 and agg["figures"]["drift_psi"] is not None
    expected = merge_summaries([window_summary(0, seed=1), window_summary(60, seed=2)],
                               profile=PROFILE)
    assert_close(agg["summary"]["derived"], expected["derived"])


def test_a_malformed_window_is_counted_and_its_raw_record_kept(
        db: Database, stores: tuple[TelemetryStore, MetricsStore]) -> None:
    tel, store = stores
    broken = window_summary(0)
    del broken["latency"]
    records = [metrics_record(1, broken), metrics_record(2, window_summary(60)),
               {"seq": 3, "kind": "metrics", "ts": 1.0, "model": "iris", "version": 1,
                "summary": "nope"}]
    assert tel.store_batch("a", TelemetryBatch(1, 3, records, epoch=1), received_at=1.0) == 3
    assert store.count() == 1 and store.stats["windows_invalid"] == 2
    assert tel.count("a", "metrics") == 3


def test_same_seqs_under_a_new_epoch_are_new_records(db: Database) -> None:
    tel = TelemetryStore(db)

    def batch(epoch: int) -> TelemetryBatch:
        recs = [{"seq": s, "kind": "feedback", "ts": 1.0, "prediction_id": f"p{s}", "truth": 1}
                for s in (1, 2, 3)]
        return TelemetryBatch(1, 3, recs, epoch=epoch)

    assert tel.store_batch("d", batch(111), received_at=1.0) == 3
    assert tel.store_batch("d", batch(111), received_at=2.0) == 0  # replay
    assert tel.store_batch("d", batch(222), received_at=3.0) == 3  # a replaced outbox
    assert tel.keys("d") == [(111, 1), (111, 2), (111, 3), (222, 1), (222, 2), (222, 3)]


def test_revision_3_keeps_v1_telemetry_under_epoch_0(db_url: str) -> None:
    db = Database(db_url)
    try:
        migrator.upgrade(db, "0001")
        with db.write() as conn:  # a database as revision 1 left it, with one record
            conn.execute(devices.insert().values(device_id="old", first_seen=1.0, last_seen=1.0))
            conn.exec_driver_sql(
                "INSERT INTO telemetry (device_id, seq, kind, ts, payload_json, received_at) "
                "VALUES ('old', 41, 'prediction', 1.0, '{}', 1.0)")
        assert "0003" in migrator.upgrade(db)
        tel = TelemetryStore(db)
        assert tel.keys("old") == [(0, 41)]
        # the old device goes on under epoch 0 without a duplicate, a new outbox is new
        recs = [{"seq": 41, "kind": "prediction", "ts": 1.0}]
        assert tel.store_batch("old", TelemetryBatch(41, 41, recs), received_at=2.0) == 0
        assert tel.store_batch("old", TelemetryBatch(41, 41, recs, epoch=5), received_at=2.0) == 1
        with db.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(metrics)).scalar_one() == 0
            cols = {c["name"] for c in sa.inspect(conn).get_columns("telemetry")}
        assert "epoch" in cols and {c.name for c in telemetry.columns} <= cols
    finally:
        db.dispose()


def test_reference_quality_comes_from_the_manifest_parity(
        stores: tuple[TelemetryStore, MetricsStore]) -> None:
    _, store = stores
    assert store.reference_quality("iris", 1) == (0.97, None)
    assert store.reference_quality("iris", 9) == (None, None)
    assert store.profile("iris", 1) == PROFILE


def test_active_model_rows_are_unaffected(db: Database) -> None:
    """FleetStore.set_reported still works next to the new tables (same devices table)."""
    FleetStore(db).set_reported("x", Reported(state="active",
                                              active=ModelRef("iris", 1, "a" * 64), ts=1.0))
    assert FleetStore(db).get("x")["active_version"] == 1


def test_operator_labels_override_the_devices_own_in_groups(
        db: Database, stores: tuple[TelemetryStore, MetricsStore]) -> None:
    from controller.storage.tables import device_labels

    tel, store = stores
    put(tel, "a", 1, window_summary(0, seed=1))
    FleetStore(db).set_reported("a", Reported(state="active", active=None,
                                              labels={"site": "berlin"}, ts=2.0))
    with db.write() as conn:
        conn.execute(device_labels.insert().values(device_id="a", key="site", value="lisbon",
                                                   set_at=1.0, set_by="operator:test"))
    assert list(store.group_aggregate("iris", 1, "site")) == ["lisbon"]
    assert store.version_aggregate("iris", 1, selector="site=lisbon")["windows"] == 1
