"""Exactly-once telemetry storage on both backends."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from controller.errors import NotFoundError, ValidationError
from controller.fleet.store import FleetStore
from controller.fleet.telemetry_store import TelemetryStore
from controller.storage.db import Database
from controller.storage.tables import telemetry
from edgewise_wire import TelemetryBatch, decode, encode


@pytest.fixture
def tel(db: Database) -> TelemetryStore:
    return TelemetryStore(db)


def records(first: int, last: int) -> list[dict]:
    return [{"seq": s, "kind": "prediction", "ts": float(s), "model": "iris", "version": 1,
             "prediction_id": f"p{s}", "latency_ms": 0.5, "label": 1} for s in range(first, last + 1)]


def batch(first: int, last: int) -> TelemetryBatch:
    return TelemetryBatch(first, last, records(first, last), ts=1.0)


def test_same_batch_twice_stored_once(tel: TelemetryStore) -> None:
    assert tel.store_batch("d1", batch(1, 50), received_at=1.0) == 50
    assert tel.store_batch("d1", batch(1, 50), received_at=2.0) == 0
    assert tel.seqs("d1") == list(range(1, 51))
    assert tel.count() == tel.count("d1") == tel.count("d1", "prediction") == 50


def test_overlapping_batches(tel: TelemetryStore) -> None:
    assert tel.store_batch("d1", batch(1, 10), received_at=1.0) == 10
    assert tel.store_batch("d1", batch(5, 20), received_at=2.0) == 10
    assert tel.store_batch("d2", batch(5, 20), received_at=2.0) == 16  # seq is per device
    assert tel.seqs("d1") == list(range(1, 21))
    assert tel.count("d2") == 16 and tel.count() == 36


def test_concurrent_replays_store_once(tel: TelemetryStore) -> None:
    """Two controller workers handed the same redelivered batch."""
    barrier = threading.Barrier(4)
    inserted: list[int] = []

    def store() -> None:
        barrier.wait()
        inserted.append(tel.store_batch("d1", batch(1, 200), received_at=1.0))

    threads = [threading.Thread(target=store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(inserted) == [0, 0, 0, 200]
    assert tel.seqs("d1") == list(range(1, 201))


def test_columns_extracted_and_payload_kept(db: Database, tel: TelemetryStore) -> None:
    recs = [
        {"seq": 1, "kind": "prediction", "ts": 1.5, "model": "iris", "version": 2,
         "prediction_id": "p1", "latency_ms": 3.25, "features": [1.0, 2.0]},
        {"seq": 2, "kind": "feedback", "ts": 2.5, "prediction_id": "p1", "correct": True},
        {"seq": 3, "kind": "error", "ts": 3.5, "version": True, "correct": "yes"},
    ]
    wire = decode(encode(TelemetryBatch(1, 3, recs, ts=9.0)), TelemetryBatch)
    assert tel.store_batch("d1", wire, received_at=10.0) == 3
    with db.read() as conn:
        rows = conn.execute(sa.select(telemetry).order_by(telemetry.c.seq)).all()
    r1, r2, r3 = (r._mapping for r in rows)
    assert (r1["kind"], r1["ts"], r1["model"], r1["version"], r1["prediction_id"],
            r1["latency_ms"], r1["correct"], r1["received_at"]) == (
        "prediction", 1.5, "iris", 2, "p1", 3.25, None, 10.0)
    assert json.loads(r1["payload_json"]) == recs[0]
    assert (r2["kind"], r2["correct"]) == ("feedback", True)
    assert (r3["version"], r3["correct"]) == (None, None)  # wrong types: NULL, payload keeps them
    assert json.loads(r3["payload_json"])["correct"] == "yes"


def test_store_batch_registers_device(db: Database, tel: TelemetryStore) -> None:
    tel.store_batch("new-device", TelemetryBatch(1, 1, records(1, 1), dropped_total=7, ts=1.0),
                    received_at=33.0)
    d = FleetStore(db).get("new-device")
    assert (d["first_seen"], d["last_seen"], d["dropped_total"], d["predictions"]) == (33.0, 33.0, 7, 1)


def test_bad_record_rejects_whole_batch(tel: TelemetryStore) -> None:
    recs = records(1, 2) + [{"seq": "3", "kind": "prediction", "ts": 3.0}]
    with pytest.raises(ValidationError, match=r"records\[2\]"):
        tel.store_batch("d1", TelemetryBatch(1, 3, recs, ts=1.0), received_at=1.0)
    assert tel.count() == 0


def test_device_summary(tel: TelemetryStore) -> None:
    with pytest.raises(NotFoundError):
        tel.device_summary("d1")
    recs = records(1, 4) + [
        {"seq": 5, "kind": "feedback", "ts": 5.0, "prediction_id": "p1", "correct": True},
        {"seq": 6, "kind": "feedback", "ts": 6.0, "prediction_id": "p2", "correct": False},
        {"seq": 7, "kind": "error", "ts": 7.0},
    ]
    tel.store_batch("d1", TelemetryBatch(1, 7, recs, ts=1.0), received_at=1.0)
    s = tel.device_summary("d1")
    assert (s["records"], s["predictions"], s["feedback"], s["errors"]) == (7, 4, 2, 1)
    assert s["accuracy"] == 0.5 and s["mean_latency_ms"] == pytest.approx(0.5)
    assert (s["first_seq"], s["last_seq"], s["last_ts"]) == (1, 7, 7.0)


def test_empty_batch(tel: TelemetryStore) -> None:
    assert tel.store_batch("d1", TelemetryBatch(1, 1, [], ts=1.0), received_at=1.0) == 0
    assert tel.device_summary("d1")["records"] == 0


def test_group_commit_stores_each_key_once(db: Database) -> None:
    """Many batches of several devices in one transaction: overlaps and replays inside the
    group and against what is stored count once; the devices are registered with the highest
    dropped_total they reported; window records reach the sink."""
    from controller.fleet.ingest_wire import decode_telemetry

    windows: list[tuple[str, int, int]] = []
    tel = TelemetryStore(db, windows=lambda conn, dev, epoch, recs, at: windows.append(
        (dev, epoch, len(recs))))
    assert tel.store_batch("d1", batch(1, 10), received_at=1.0) == 10

    def wire(device: str, first: int, last: int, dropped: int = 0, epoch: int = 0) -> Any:
        recs = records(first, last)
        if device == "d3":
            recs[0] = {"seq": first, "kind": "metrics", "ts": 1.0, "summary": {}}
        return decode_telemetry(encode(TelemetryBatch(first, last, recs, dropped, ts=1.0,
                                                      epoch=epoch)), device, 5.0)

    group = [wire("d1", 5, 20), wire("d2", 1, 30, dropped=4), wire("d2", 21, 40, dropped=2),
             wire("d1", 15, 25), wire("d3", 1, 5, epoch=8), wire("d1", 1, 3, epoch=9)]
    assert tel.store_group(group) == 15 + 40 + 5 + 3
    assert tel.store_group(group) == 0
    assert tel.seqs("d1") == sorted(list(range(1, 26)) + [1, 2, 3])
    assert tel.keys("d1")[-3:] == [(9, 1), (9, 2), (9, 3)]
    assert tel.seqs("d2") == list(range(1, 41))
    assert tel.keys("d3") == [(8, s) for s in range(1, 6)]
    assert FleetStore(db).get("d2")["dropped_total"] == 4
    assert windows == [("d3", 8, 1), ("d3", 8, 1)]


def test_group_with_a_value_the_database_refuses_fails_whole(db: Database) -> None:
    """Nothing of a group is stored when one row cannot be, and the error says it is the data
    (ValidationError), not the database (StorageError): the bridge then stores the group batch
    by batch instead of retrying it."""
    tel = TelemetryStore(db)
    ok = rows_batch("d1", 1, 3)
    bad = rows_batch("d2", 1, 2)
    bad.rows[1] = bad.rows[1][:6] + (2**64,) + bad.rows[1][7:]  # a version past 64 bits
    with pytest.raises(ValidationError, match="refused|range"):
        tel.store_group([ok, bad])
    assert tel.count() == 0
    assert tel.store_group([ok]) == 3


def rows_batch(device: str, first: int, last: int) -> Any:
    from controller.fleet.ingest_wire import rows_of

    return rows_of(device, batch(first, last), 1.0)


def test_groups_advance_last_seen_and_never_lower_a_mark(db: Database) -> None:
    """A device's row (one statement per group registers or updates it): first_seen stays its
    first contact, last_seen and dropped_total only ever rise, whatever order groups commit in."""
    from controller.fleet.ingest_wire import rows_of

    tel, fleet = TelemetryStore(db), FleetStore(db)

    def at(first: int, received_at: float, dropped: int) -> Any:
        return rows_of("d1", TelemetryBatch(first, first, records(first, first), dropped, ts=1.0),
                       received_at)

    def marks() -> tuple[float, float, int]:
        d = fleet.get("d1")
        return d["first_seen"], d["last_seen"], d["dropped_total"]

    tel.store_group([at(1, 10.0, 5)])
    assert marks() == (10.0, 10.0, 5)
    tel.store_group([at(2, 20.0, 3)])  # later, fewer dropped reported: last_seen only
    assert marks() == (10.0, 20.0, 5)
    tel.store_group([at(3, 15.0, 9)])  # an earlier receipt committed late: dropped_total only
    assert marks() == (10.0, 20.0, 9)
    tel.store_group([at(2, 12.0, 1)])  # a replay of nothing new: nothing moves
    assert marks() == (10.0, 20.0, 9)
