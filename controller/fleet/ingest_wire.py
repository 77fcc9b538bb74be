"""Telemetry batches as the controller ingests them: decoded and checked by msgspec against one
schema (this module), straight into the rows the telemetry table stores.

The wire format is :class:`edgewise_wire.TelemetryBatch` (the agent encodes with the standard
library); this is the controller's fast reader of it. The envelope (schema, type, seq range,
epoch, dropped count) is checked as a whole: a bad envelope is a malformed message, dropped and
counted, never acknowledged. Records are checked one by one: a bad record (outside the batch's
seq range, an unknown kind, no numeric ``ts``, not an object) is left out and counted, and the
good records of the batch are stored and the batch acknowledged, so one bad record neither
blocks the device's outbox nor costs the records around it. A batch in which no record is good
is malformed as a whole (what the controller did before records were checked one by one).

A record's optional columns (model, version, prediction id, latency, correct) of the wrong
type or out of range become NULL and the record is kept: its JSON is stored whole in
``payload_json``, exactly the bytes the agent sent (no second encoding).

Pure: no database, no clock (``received_at`` is passed in).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from edgewise_wire.codec import SCHEMA_VERSION
from edgewise_wire.errors import PayloadTooLarge, SchemaError
from edgewise_wire.message_base import MAX_TELEMETRY_BYTES
from edgewise_wire.telemetry_messages import MAX_EPOCH, RECORD_KINDS, TelemetryBatch

MAX_RECORDS = 10_000  # per batch, as edgewise_wire.TelemetryBatch allows
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_TEXT = 128  # model and prediction id columns
_KINDS = frozenset(RECORD_KINDS)
# the record kinds handed to the window sinks as whole objects
WINDOW_KINDS = frozenset(("metrics", "health", "experiment"))

Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]

# the order of TELEMETRY_COLUMNS, the tuple every writer takes
TELEMETRY_COLUMNS = ("device_id", "epoch", "seq", "kind", "ts", "model", "version",
                     "prediction_id", "latency_ms", "correct", "payload_json", "received_at", "n")
Row = tuple[str, int, int, str, float, "str | None", "int | None", "str | None",
            "float | None", "bool | None", str, float, int]
MAX_PREDICTIONS = 1_000_000  # in one columnar record


class _Envelope(msgspec.Struct, kw_only=True):
    schema: int
    type: str
    first_seq: Annotated[int, msgspec.Meta(ge=1, le=INT64_MAX)]
    last_seq: Annotated[int, msgspec.Meta(ge=1, le=INT64_MAX)]
    records: Annotated[list[msgspec.Raw], msgspec.Meta(max_length=MAX_RECORDS)]
    dropped_total: Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
    ts: float
    epoch: Annotated[int, msgspec.Meta(ge=0, le=MAX_EPOCH)] | None = None


class _Record(msgspec.Struct, kw_only=True):
    """The fast path: a record whose every known field has its type. Any other record is read
    as an object and its columns pulled out one by one (:func:`_lenient_row`)."""

    seq: Int64
    kind: str
    ts: float
    model: Text | None = None
    version: Int64 | None = None
    prediction_id: Text | None = None
    latency_ms: float | None = None
    correct: bool | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=MAX_PREDICTIONS)] | None = None


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_record_decoder = msgspec.json.Decoder(_Record)
_any_decoder = msgspec.json.Decoder()


@dataclass(slots=True)
class DecodedBatch:
    """One telemetry message, checked: its rows ready for the writers, the records the window
    sinks take, and the records left out with the reason of each."""

    device_id: str
    first_seq: int
    last_seq: int
    epoch: int
    dropped_total: int
    received_at: float
    rows: list[Row]
    windows: list[dict[str, Any]] = field(default_factory=list)  # kind "metrics"
    health: list[dict[str, Any]] = field(default_factory=list)  # kind "health"
    experiments: list[dict[str, Any]] = field(default_factory=list)  # kind "experiment"
    rejected: list[str] = field(default_factory=list)  # one line per bad record

    @property
    def records(self) -> int:
        return len(self.rows) + len(self.rejected)


def decode_telemetry(payload: bytes, device_id: str, received_at: float) -> DecodedBatch:
    """Decode and check one telemetry message; raise a :class:`ProtocolError` for a bad
    envelope or a batch without one good record."""
    if len(payload) > MAX_TELEMETRY_BYTES:
        raise PayloadTooLarge(f"telemetry payload of {len(payload)} bytes exceeds the bound of "
                              f"{MAX_TELEMETRY_BYTES}")
    if not payload:
        raise SchemaError("empty payload where a telemetry message was expected")
    try:
        env = _envelope_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SchemaError(f"telemetry message: {exc}") from None
    if env.schema != SCHEMA_VERSION:
        raise SchemaError(f"schema version {env.schema} is not supported "
                          f"(expected {SCHEMA_VERSION})")
    if env.type != TelemetryBatch.TYPE:
        raise SchemaError(f"expected a {TelemetryBatch.TYPE!r} message, got {env.type!r}")
    if env.last_seq < env.first_seq:
        raise SchemaError(f"field 'last_seq' must be >= {env.first_seq}, got {env.last_seq}")
    if not math.isfinite(env.ts):
        raise SchemaError("field 'ts' must be finite")
    batch = DecodedBatch(device_id, env.first_seq, env.last_seq, env.epoch or 0,
                         env.dropped_total, received_at, [])
    for i, raw in enumerate(env.records):
        try:
            _add_record(batch, raw)
        except (SchemaError, msgspec.DecodeError, UnicodeDecodeError) as exc:
            batch.rejected.append(f"records[{i}]: {exc}")
    if batch.rejected and not batch.rows:
        shown = "; ".join(batch.rejected[:3])
        raise SchemaError(f"no valid record in the batch ({len(batch.rejected)} bad: {shown})")
    return batch


def _add_record(batch: DecodedBatch, raw: msgspec.Raw) -> None:
    text = bytes(raw).decode()
    try:
        r = _record_decoder.decode(raw)
    except msgspec.ValidationError:
        row = _lenient_row(batch, _any_decoder.decode(raw), text)
    else:
        if not (batch.first_seq <= r.seq <= batch.last_seq):
            raise SchemaError(f"seq {r.seq} is outside [{batch.first_seq}, {batch.last_seq}]")
        if r.kind not in _KINDS:
            raise SchemaError(f"kind {r.kind!r} is not one of {RECORD_KINDS}")
        if not math.isfinite(r.ts):
            raise SchemaError("ts must be a finite number")
        latency = r.latency_ms
        if latency is not None and not math.isfinite(latency):
            latency = None
        row = (batch.device_id, batch.epoch, r.seq, r.kind, r.ts, r.model, r.version,
               r.prediction_id, latency, r.correct, text, batch.received_at,
               _count(r.kind, r.n))
    kind = row[3]
    if kind in WINDOW_KINDS:
        sink = batch.windows if kind == "metrics" else batch.health if kind == "health" \
            else batch.experiments
        sink.append(_any_decoder.decode(raw))
    batch.rows.append(row)


def _lenient_row(batch: DecodedBatch, r: Any, text: str, lo: int | None = None,
                 hi: int | None = None) -> Row:
    """The columns of a record whose optional fields have the wrong types (they become NULL);
    seq (within ``lo..hi``, by default the batch's range), kind and ts must still be right."""
    lo = batch.first_seq if lo is None else lo
    hi = batch.last_seq if hi is None else hi
    if not isinstance(r, dict):
        raise SchemaError(f"must be an object, got {type(r).__name__}")
    seq_value, kind, ts = r.get("seq"), r.get("kind"), r.get("ts")
    if not _is_int(seq_value):
        raise SchemaError(f"seq must be a 64-bit integer, got {seq_value!r:.40}")
    seq: int = seq_value  # type: ignore[assignment]  # _is_int checked it
    if not lo <= seq <= hi:
        raise SchemaError(f"seq {seq} is outside [{lo}, {hi}]")
    if not isinstance(kind, str) or kind not in _KINDS:  # a list or object is unhashable
        raise SchemaError(f"kind {kind!r:.40} is not one of {RECORD_KINDS}")
    tsf = _number(ts)
    if tsf is None:
        raise SchemaError(f"ts must be a finite number, got {ts!r:.40}")
    version = r.get("version")
    correct = r.get("correct")
    n: Any = r.get("n")
    return (batch.device_id, batch.epoch, seq, kind, tsf, _text(r.get("model")),
            version if _is_int(version) else None, _text(r.get("prediction_id")),
            _number(r.get("latency_ms")), correct if isinstance(correct, bool) else None,
            text, batch.received_at,
            _count(kind, n if _is_int(n) and 1 <= n <= MAX_PREDICTIONS else None))


def _count(kind: str, n: int | None) -> int:
    """How many predictions a row stands for: a columnar record must say (``n``)."""
    if kind != "predictions":
        return 1
    if n is None:
        raise SchemaError(f"a predictions record needs n, its number of predictions "
                          f"(1..{MAX_PREDICTIONS})")
    return n


def rows_of(device_id: str, batch: TelemetryBatch, received_at: float) -> DecodedBatch:
    """A :class:`TelemetryBatch` already decoded (by :func:`edgewise_wire.decode`, or built
    in a test) as a :class:`DecodedBatch`; every record must be good (``SchemaError`` names
    the first bad one). The payload is the record encoded as compact JSON."""
    out = DecodedBatch(device_id, batch.first_seq, batch.last_seq, batch.epoch,
                       batch.dropped_total, received_at, [])
    for i, r in enumerate(batch.records):
        try:
            text = _strict_json(r)
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"records[{i}] is not JSON-serialisable: {exc}") from None
        try:
            # records built in-process: any seq in 64 bits (the wire checked the range)
            row = _lenient_row(out, r, text, INT64_MIN, INT64_MAX)
        except SchemaError as exc:
            raise SchemaError(f"records[{i}] {exc}") from None
        if row[3] == "metrics":
            out.windows.append(r)
        elif row[3] == "health":
            out.health.append(r)
        elif row[3] == "experiment":
            out.experiments.append(r)
        out.rows.append(row)
    return out


_strict_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and INT64_MIN <= v <= INT64_MAX


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) and len(v) <= MAX_TEXT else None
