"""Messages to bytes and back, and the table of every message type.

Every JSON message is an object with ``"schema": 1`` and a ``"type"``; :func:`decode` checks the
size bound *before* parsing, then the JSON, then the schema, and raises a precise
:class:`ProtocolError` subclass. Artifact chunks are raw bytes and are not decoded here.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edgewise_wire.errors import PayloadTooLarge, SchemaError
from edgewise_wire.experiments import ExperimentOrder
from edgewise_wire.message_base import M, Message, now
from edgewise_wire.order_messages import Desired, DesiredAgent, SamplingOrder
from edgewise_wire.request_messages import ArtifactRequest, LogsReply, LogsRequest
from edgewise_wire.status_messages import ControllerPresence, Presence, Reported
from edgewise_wire.telemetry_messages import Ack, TelemetryBatch
from edgewise_wire.validation import get_int, get_str

SCHEMA_VERSION = 1

# one table of message types for every receiver
MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls for cls in (Presence, ControllerPresence, Desired, DesiredAgent, Reported,
                              TelemetryBatch, Ack, ArtifactRequest, LogsRequest, LogsReply,
                              SamplingOrder, ExperimentOrder)
}


def encode(message: Message) -> bytes:
    payload = {"schema": SCHEMA_VERSION, "type": message.TYPE, **message.body()}
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > message.MAX_BYTES:
        raise PayloadTooLarge(f"{message.TYPE} message of {len(data)} bytes exceeds {message.MAX_BYTES}")
    return data


# NaN or Infinity where a JSON value starts (after ":", "," or "["): what Python's json writes
# for a non-finite float. Inside a string (base64 text, a label) it is not a value; a string
# that happens to hold ":NaN" only sends the batch the slow, record-by-record way.
_NON_FINITE = re.compile(r"[:,\[]\s*-?(?:NaN|Infinity)")


def encode_telemetry_spliced(first_seq: int, last_seq: int, bodies: list[tuple[int, str]],
                              dropped_total: int, epoch: int,
                              ts: float | None = None) -> bytes | None:
    """A ``telemetry`` message built from records already encoded as JSON objects (the
    outbox's bodies, without their seq), splicing each ``seq`` in instead of decoding and
    encoding every record again. Decodes to the same :class:`TelemetryBatch` as :func:`encode`.

    None when a body cannot be spliced safely (it has its own ``"seq"``, or a ``NaN`` or
    ``Infinity`` that JSON does not allow) or the message would be too large: the caller then
    takes the record-by-record path, which finds and handles the offending record. ``ts``: the
    sender's clock (default: the wall clock here).
    """
    parts = []
    for seq, body in bodies:
        if '"seq"' in body or body[:1] != "{" or (
                ("NaN" in body or "Infinity" in body) and _NON_FINITE.search(body)):
            return None
        parts.append(f'{{"seq":{seq}}}' if body == "{}" else f'{{"seq":{seq},{body[1:]}')
    head = json.dumps({"schema": SCHEMA_VERSION, "type": TelemetryBatch.TYPE,
                       "first_seq": first_seq, "last_seq": last_seq,
                       "dropped_total": dropped_total, "ts": now() if ts is None else ts,
                       "epoch": epoch},
                      separators=(",", ":"))
    data = f'{head[:-1]},"records":[{",".join(parts)}]}}'.encode()
    return data if len(data) <= TelemetryBatch.MAX_BYTES else None


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's parser would accept them and poison the stores
    raise ValueError(f"{name} is not allowed")


def decode(payload: bytes, expected: type[M]) -> M:
    """Decode ``payload`` as a message of type ``expected`` or raise a ProtocolError."""
    if len(payload) > expected.MAX_BYTES:
        raise PayloadTooLarge(
            f"{expected.TYPE} payload of {len(payload)} bytes exceeds the bound of {expected.MAX_BYTES}"
        )
    if not payload:
        raise SchemaError(f"empty payload where a {expected.TYPE} message was expected")
    try:
        obj = json.loads(payload, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise SchemaError(f"payload is not JSON: {exc}") from None
    except RecursionError:
        raise SchemaError("payload is nested too deeply") from None
    if not isinstance(obj, dict):
        raise SchemaError("payload must be a JSON object")
    schema = get_int(obj, "schema")
    if schema != SCHEMA_VERSION:
        raise SchemaError(f"schema version {schema} is not supported (expected {SCHEMA_VERSION})")
    kind = get_str(obj, "type", max_len=32)
    if kind != expected.TYPE:
        raise SchemaError(f"message type {kind!r} where {expected.TYPE!r} was expected")
    return expected.from_body(obj)
