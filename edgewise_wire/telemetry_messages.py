"""The telemetry direction: the agent's batches of outbox records (``telemetry``) and the
controller's acknowledgements of them (``ack``), with the record kinds a batch may hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from edgewise_wire.errors import SchemaError
from edgewise_wire.message_base import MAX_TELEMETRY_BYTES, Message, now
from edgewise_wire.validation import get_float, get_int, get_list, get_str

# "health" (edgewise_wire.health) is newer than the others: a controller from before it refuses
# a batch holding one, so controllers are upgraded before agents (docs/protocol.md)
# "predictions" (many predictions as arrays, edge_agent/telemetry/records.py) is newer still,
# and "experiment" (an experiment's window, edgewise_wire.experiments) newer again
RECORD_KINDS = ("prediction", "feedback", "error", "metrics", "health", "predictions",
                "experiment")

# Epochs are random integers below 2**53, so every JSON reader holds them exactly.
MAX_EPOCH = 2**53 - 1


@dataclass(frozen=True)
class TelemetryBatch(Message):
    """Records from the agent's outbox. Record ``seq`` numbers are unique per outbox ``epoch``
    and increasing; the controller stores each (device, epoch, seq) once and acknowledges the
    batch. ``epoch`` 0 is an outbox created before epochs existed (or a sender without them)."""

    TYPE: ClassVar[str] = "telemetry"
    MAX_BYTES: ClassVar[int] = MAX_TELEMETRY_BYTES
    first_seq: int
    last_seq: int
    records: list[dict[str, Any]]
    dropped_total: int = 0  # records this device ever dropped on outbox overflow
    ts: float = field(default_factory=now)
    epoch: int = 0  # identifies the outbox file the seqs belong to

    def body(self) -> dict[str, Any]:
        return {"first_seq": self.first_seq, "last_seq": self.last_seq, "records": self.records,
                "dropped_total": self.dropped_total, "ts": self.ts, "epoch": self.epoch}

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> TelemetryBatch:
        first = get_int(d, "first_seq", minimum=1)
        last = get_int(d, "last_seq", minimum=first)
        records = get_list(d, "records", max_items=10_000)
        for i, r in enumerate(records):
            ctx = f"records[{i}]"
            if not isinstance(r, dict):
                raise SchemaError(f"{ctx} must be an object")
            seq = get_int(r, "seq", ctx)
            if not first <= seq <= last:
                raise SchemaError(f"{ctx}.seq {seq} is outside [{first}, {last}]")
            kind = get_str(r, "kind", ctx)
            if kind not in RECORD_KINDS:
                raise SchemaError(f"{ctx}.kind {kind!r} is not one of {RECORD_KINDS}")
            get_float(r, "ts", ctx)
        epoch = get_int(d, "epoch", optional=True, minimum=0)
        if epoch is not None and epoch > MAX_EPOCH:
            raise SchemaError(f"field 'epoch' must be < 2**53, got {epoch}")
        return cls(first, last, records, get_int(d, "dropped_total", minimum=0), get_float(d, "ts"),
                   epoch or 0)


@dataclass(frozen=True)
class Ack(Message):
    """Controller -> agent: records first_seq..last_seq of outbox ``epoch`` are committed; the
    agent may delete them. Every field is required: an ack without an epoch could delete
    unacknowledged records of any outbox, so a decoder refuses it (and the agent counts it);
    an agent also refuses an ack for another epoch (an outbox it replaced). A batch sent
    without an epoch (an outbox from before epochs) is acknowledged as epoch 0, the epoch
    such an outbox keeps."""

    TYPE: ClassVar[str] = "ack"
    first_seq: int
    last_seq: int
    epoch: int

    def body(self) -> dict[str, Any]:
        return {"first_seq": self.first_seq, "last_seq": self.last_seq, "epoch": self.epoch}

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> Ack:
        first = get_int(d, "first_seq", minimum=1)
        last = get_int(d, "last_seq", minimum=first)
        epoch = get_int(d, "epoch", minimum=0)
        if epoch > MAX_EPOCH:
            raise SchemaError(f"field 'epoch' exceeds {MAX_EPOCH}")
        return cls(first, last, epoch)
