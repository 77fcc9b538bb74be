"""Experiments and their windows on SQLite and PostgreSQL: windows stored once with their
telemetry batch, malformed ones counted and left out, experiments created, updated, audited."""

from __future__ import annotations

from typing import Any

import pytest

from controller.audit.store import AuditEntry, AuditLog
from controller.errors import NotFoundError
from controller.experiments.store import RUNNING, STOPPED, ExperimentRecord, ExperimentStore
from controller.fleet.telemetry_store import TelemetryStore
from controller.storage.db import Database
from edgewise_wire import TelemetryBatch


def window(seq: int, ts: float, experiment_id: str = "exp-1") -> dict[str, Any]:
    arm = {"rows": 10, "labelled": 5, "correct": 4, "errors": 0, "latency_sum": 10.0,
           "latency_sumsq": 12.0}
    return {"seq": seq, "kind": "experiment", "ts": ts, "start_ts": ts - 60,
            "experiment_id": experiment_id, "mode": "ab",
            "arms": {"control": dict(arm), "candidate": dict(arm)}}


@pytest.fixture
def stores(db: Database) -> tuple[TelemetryStore, ExperimentStore]:
    store = ExperimentStore(db)
    return TelemetryStore(db, experiments=store.store_windows), store


def test_windows_are_stored_once_with_their_batch(
        stores: tuple[TelemetryStore, ExperimentStore]) -> None:
    telemetry, store = stores
    batch = TelemetryBatch(1, 3, [window(1, 100.0), window(2, 160.0),
                                  window(3, 130.0, "exp-2")], epoch=3)
    assert telemetry.store_batch("pi-1", batch, 200.0) == 3
    assert telemetry.store_batch("pi-1", batch, 201.0) == 0  # a replayed batch
    stored = store.windows("exp-1")
    assert [(d, r["ts"]) for d, r in stored] == [("pi-1", 100.0), ("pi-1", 160.0)]
    assert store.stats["experiment_windows_stored"] == 3


def test_a_malformed_window_is_counted_and_left_out(
        stores: tuple[TelemetryStore, ExperimentStore]) -> None:
    telemetry, store = stores
    bad = window(1, 100.0)
    bad["arms"]["candidate"]["rows"] = -3
    assert telemetry.store_batch("pi-1", TelemetryBatch(1, 2, [bad, window(2, 110.0)]),
                                 200.0) == 2
    assert [r["ts"] for _, r in store.windows("exp-1")] == [110.0]
    assert store.stats["experiment_window_invalid"] == 1


def test_experiments_are_created_updated_and_audited(db: Database) -> None:
    store = ExperimentStore(db)
    record = ExperimentRecord("exp-1", "shadow iris:2 vs iris:1", "shadow", "iris", 2, 1,
                              {"mode": "shadow", "design": {}}, {"pi-1": "both"}, RUNNING,
                              "running", 10.0, "ops", None, 10.0, None)
    store.create(record, [AuditEntry("experiment.started", actor="ops", devices=["pi-1"])])
    assert store.get("exp-1") == record
    store.update("exp-1", [AuditEntry("experiment.stopped", actor="ops")], 20.0,
                 status=STOPPED, stopped_at=20.0)
    assert store.get("exp-1").status == STOPPED and store.get("exp-1").stopped_at == 20.0
    assert [r.experiment_id for r in store.query(STOPPED)] == ["exp-1"]
    assert store.query(RUNNING) == []
    actions = [e["action"] for e in AuditLog(db).page(limit=10)["entries"]]
    assert actions == ["experiment.stopped", "experiment.started"]
    with pytest.raises(NotFoundError):
        store.get("exp-2")
    with pytest.raises(NotFoundError):
        store.update("exp-2", status=STOPPED)
