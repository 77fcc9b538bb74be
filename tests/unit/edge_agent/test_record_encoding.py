"""Prediction records are written to the outbox by format, not through ``json`` (speed); the
body must be exactly the string ``json`` gives for the same record dict, for any label,
confidence, model name and time (Hypothesis)."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.telemetry.records import CallRecords, encode_pending

_json = json.JSONEncoder(separators=(",", ":")).encode
labels = st.one_of(st.integers(-2**63, 2**63 - 1), st.booleans(), st.text(max_size=12),
                   st.floats(allow_nan=True, allow_infinity=True))
floats = st.floats(allow_nan=True, allow_infinity=True)


def _as_json_would(call: CallRecords, boot_id: str) -> list[str]:
    out = []
    for i in call.sampled:
        record = {"kind": "prediction", "ts": call.ts, "model": call.model,
                  "version": call.version, "prediction_id": f"{boot_id}-{call.first + i}",
                  "latency_ms": call.latency_ms, "label": call.labels[i]}
        if call.confidences is not None:
            record["confidence"] = call.confidences[i]
        out.append(_json(record))
    return out


@settings(max_examples=300, deadline=None)
@given(ts=floats, latency=floats, model=st.text(min_size=1, max_size=20),
       version=st.integers(0, 2**53), first=st.integers(0, 2**40),
       rows=st.lists(st.tuples(labels, floats), min_size=1, max_size=6),
       with_confidence=st.booleans(), sample_all=st.booleans())
def test_prediction_bodies_are_what_json_writes(
        ts: float, latency: float, model: str, version: int, first: int,
        rows: list[tuple[object, float]], with_confidence: bool, sample_all: bool) -> None:
    call = CallRecords(ts, model, version, first, latency, [r[0] for r in rows],
                       [r[1] for r in rows] if with_confidence else None,
                       range(len(rows)) if sample_all else list(range(0, len(rows), 2)))
    bodies = encode_pending([call], "0a1b2c3d")
    assert bodies == _as_json_would(call, "0a1b2c3d")
    for body in bodies:  # and json reads them back (NaN/Infinity as Python's json allows)
        assert json.loads(body)["prediction_id"].startswith("0a1b2c3d-")


def test_other_records_keep_their_order_around_predictions() -> None:
    call = CallRecords(1.0, "m", 1, 0, 0.5, [1, 2], None, range(2))
    error = {"kind": "error", "ts": 2.0, "reason": "invalid_input"}
    bodies = encode_pending([error, call, error], "b")
    assert [json.loads(b)["kind"] for b in bodies] == ["error", "prediction", "prediction",
                                                       "error"]
    assert math.isclose(json.loads(bodies[1])["latency_ms"], 0.5)
