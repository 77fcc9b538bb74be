"""The controller's telemetry decoder: the envelope as a whole, records one by one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.fleet.ingest_wire import TELEMETRY_COLUMNS, decode_telemetry, rows_of
from edgewise_wire import TelemetryBatch, encode
from edgewise_wire.errors import PayloadTooLarge, SchemaError
from edgewise_wire.message_base import MAX_TELEMETRY_BYTES


def body(records: list[Any], **changes: Any) -> bytes:
    d: dict[str, Any] = {"schema": 1, "type": "telemetry", "first_seq": 1, "last_seq": 5,
                         "records": records, "dropped_total": 2, "ts": 1.0, "epoch": 7}
    d.update(changes)
    return json.dumps(d).encode()


def good(seq: int, **extra: Any) -> dict[str, Any]:
    return {"seq": seq, "kind": "prediction", "ts": 10.0 + seq, "model": "iris", "version": 3,
            "prediction_id": f"p{seq}", "latency_ms": 0.5, "label": 1, **extra}


def test_rows_carry_the_columns_and_the_record_whole() -> None:
    b = decode_telemetry(body([good(1), good(2)]), "d1", 99.0)
    assert (b.device_id, b.first_seq, b.last_seq, b.epoch, b.dropped_total) == ("d1", 1, 5, 7, 2)
    row = dict(zip(TELEMETRY_COLUMNS, b.rows[0], strict=True))
    assert row == {"device_id": "d1", "epoch": 7, "seq": 1, "kind": "prediction", "ts": 11.0,
                   "model": "iris", "version": 3, "prediction_id": "p1", "latency_ms": 0.5,
                   "correct": None, "payload_json": row["payload_json"], "received_at": 99.0,
                   "n": 1}
    assert json.loads(row["payload_json"]) == good(1)
    assert b.rejected == [] and b.records == 2


def test_same_rows_as_the_wire_decoder_for_what_agents_send() -> None:
    batch = TelemetryBatch(1, 3, [good(1), good(2), {"seq": 3, "kind": "feedback", "ts": 4.0,
                                                      "prediction_id": "p1", "correct": True}],
                           dropped_total=0, ts=1.0, epoch=9)
    fast = decode_telemetry(encode(batch), "d", 5.0)
    slow = rows_of("d", batch, 5.0)
    assert [r[:10] for r in fast.rows] == [r[:10] for r in slow.rows]
    assert [json.loads(r[10]) for r in fast.rows] == [json.loads(r[10]) for r in slow.rows]


def test_bad_records_are_left_out_and_named() -> None:
    records = [good(1), good(9), {"seq": 2, "kind": "bogus", "ts": 1.0}, 5,
               {"seq": 3, "kind": "error"}, {"seq": "4", "kind": "error", "ts": 1.0}, good(5)]
    b = decode_telemetry(body(records), "d1", 1.0)
    assert [r[2] for r in b.rows] == [1, 5]
    assert len(b.rejected) == 5
    assert b.rejected[0].startswith("records[1]: seq 9 is outside [1, 5]")
    assert "records[2]" in b.rejected[1] and "bogus" in b.rejected[1]
    assert "records[3]" in b.rejected[2] and "object" in b.rejected[2]
    assert "records[4]" in b.rejected[3] and "ts" in b.rejected[3]
    assert "records[5]" in b.rejected[4] and "seq" in b.rejected[4]


def test_optional_columns_of_the_wrong_type_become_null() -> None:
    rec = {"seq": 1, "kind": "prediction", "ts": 1, "version": 2**63, "model": "m" * 200,
           "correct": "yes", "latency_ms": "fast", "prediction_id": 5}
    b = decode_telemetry(body([rec]), "d1", 1.0)
    row = dict(zip(TELEMETRY_COLUMNS, b.rows[0], strict=True))
    assert (row["version"], row["model"], row["correct"], row["latency_ms"],
            row["prediction_id"]) == (None, None, None, None, None)
    assert json.loads(row["payload_json"])["correct"] == "yes"


def test_window_records_go_to_the_sinks_whole() -> None:
    metrics = {"seq": 1, "kind": "metrics", "ts": 1.0, "summary": {"n": 3}}
    health = {"seq": 2, "kind": "health", "ts": 2.0, "gauges": {"rss": [1, 2, 3]}}
    b = decode_telemetry(body([metrics, health, good(3)]), "d1", 1.0)
    assert b.windows == [metrics] and b.health == [health] and len(b.rows) == 3


@pytest.mark.parametrize("name,payload", [
    ("not-json", b"\xff not json"),
    ("empty", b""),
    ("array", b"[1]"),
    ("schema-2", body([good(1)], schema=2)),
    ("wrong-type", body([good(1)], type="presence")),
    ("first-seq-zero", body([], first_seq=0)),
    ("inverted", body([], first_seq=5, last_seq=1)),
    ("seq-past-64-bits", body([], first_seq=2**63, last_seq=2**63)),
    ("epoch-too-large", body([], epoch=2**53)),
    ("dropped-negative", body([], dropped_total=-1)),
    ("ts-huge", body([], ts=10**400)),
    ("no-ts", json.dumps({"schema": 1, "type": "telemetry", "first_seq": 1, "last_seq": 1,
                          "records": [], "dropped_total": 0}).encode()),
    ("nan", body([good(1)]).replace(b"10.5", b"NaN").replace(b'"ts": 1.0', b'"ts": NaN')),
    ("all-records-bad", body([{"seq": 9, "kind": "error", "ts": 1.0}])),
    ("nested", b"[" * 100_000 + b"]" * 100_000),
])
def test_bad_envelopes_are_malformed(name: str, payload: bytes) -> None:
    with pytest.raises(SchemaError):
        decode_telemetry(payload, "d1", 1.0)


def test_size_bound_checked_before_parsing() -> None:
    with pytest.raises(PayloadTooLarge):
        decode_telemetry(b" " * (MAX_TELEMETRY_BYTES + 1), "d1", 1.0)


def test_an_empty_batch_carries_the_drop_count() -> None:
    b = decode_telemetry(body([], first_seq=4, last_seq=4, dropped_total=11), "d1", 1.0)
    assert (b.rows, b.rejected, b.dropped_total) == ([], [], 11)


def test_rows_of_refuses_a_bad_record_by_index() -> None:
    batch = TelemetryBatch(1, 2, [good(1), {"seq": 2, "kind": "error", "ts": float("nan")}])
    with pytest.raises(SchemaError, match=r"records\[1\]"):
        rows_of("d", batch, 1.0)


def test_a_kind_of_the_wrong_type_is_a_bad_record_not_a_crash() -> None:
    """A list or object as ``kind`` cannot be looked up among the kinds (unhashable): found by
    the bridge's fuzz test, it is refused like any other bad kind."""
    records = [good(1), {"seq": 2, "kind": [], "ts": 1.0}, {"seq": 3, "kind": {}, "ts": 1.0}]
    b = decode_telemetry(body(records), "d1", 1.0)
    assert [r[2] for r in b.rows] == [1]
    assert len(b.rejected) == 2 and all("kind" in reason for reason in b.rejected), b.rejected
