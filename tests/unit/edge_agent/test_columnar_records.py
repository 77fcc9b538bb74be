"""Columnar prediction records: one ``predictions`` record per flush and model version, with
every sampled prediction's id, time, latency, label, confidence and input row, in call order."""

from __future__ import annotations

import base64
import json

import numpy as np

from edge_agent.telemetry.records import CallRecords, encode_pending


def call(ts: float, version: int, first: int, n: int, sampled: range | list[int] | None = None,
         scores: bool = True) -> CallRecords:
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2) + first
    return CallRecords(ts, "iris", version, first, 0.5, [i % 3 for i in range(n)],
                       [0.25 * (i % 4) for i in range(n)] if scores else None,
                       range(n) if sampled is None else sampled, x)


def test_calls_of_one_version_become_one_record() -> None:
    error = {"kind": "error", "ts": 3.0, "reason": "x"}
    bodies = encode_pending([call(1.0, 1, 0, 2), call(2.0, 1, 2, 3), error, call(4.0, 1, 5, 1),
                             call(5.0, 2, 6, 2, scores=False)], "boot", columnar=True)
    recs = [json.loads(b) for b in bodies]
    assert [r["kind"] for r in recs] == ["predictions", "error", "predictions", "predictions"]
    first = recs[0]
    assert (first["n"], first["pid"], first["calls"], first["boot"]) == (
        5, [0, 1, 2, 3, 4], [[2, 1.0, 0.5], [3, 2.0, 0.5]], "boot")
    assert first["labels"] == [0, 1, 0, 1, 2]
    assert f32(first["confidence_f32"]).tolist() == [0, 0.25, 0, 0.25, 0.5]
    inputs = f32(first["inputs_f32"]).reshape(5, first["n_features"])
    assert inputs[2].tolist() == [2.0, 3.0] and inputs[4].tolist() == [6.0, 7.0]
    assert first["latency_ms"] == 0.5 and first["ts"] == 2.0
    assert recs[3]["version"] == 2 and "confidence_f32" not in recs[3]


def test_only_sampled_rows_are_kept() -> None:
    (body,) = encode_pending([call(1.0, 1, 10, 4, sampled=[1, 3])], "b", columnar=True)
    rec = json.loads(body)
    assert rec["pid"] == [11, 13] and rec["labels"] == [1, 0] and rec["n"] == 2
    assert f32(rec["inputs_f32"]).reshape(2, 2).tolist() == [[12.0, 13.0], [16.0, 17.0]]


def test_default_stays_one_record_per_prediction() -> None:
    bodies = encode_pending([call(1.0, 1, 0, 3)], "b")
    assert [json.loads(b)["kind"] for b in bodies] == ["prediction"] * 3


def f32(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4")


def test_a_record_states_the_share_it_was_sampled_under() -> None:
    sampled = call(1.0, 1, 0, 4, sampled=[2])
    sampled.share = 0.1
    whole = call(2.0, 1, 4, 2)
    bodies = encode_pending([call(0.5, 1, 10, 1), sampled, whole], "b", columnar=True)
    recs = [json.loads(b) for b in bodies]
    # a change of share ends the run: a record stands for 1/share predictions throughout
    assert [(r["pid"], r.get("share")) for r in recs] == [([10], None), ([2], 0.1),
                                                          ([4, 5], None)]
