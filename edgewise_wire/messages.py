"""Typed, versioned message schemas shared by the agent and the controller.

Every JSON message is an object with ``"schema": 1`` and a ``"type"``; :func:`decode` checks the
size bound *before* parsing, then the JSON, then the schema, and raises a precise
:class:`ProtocolError` subclass. Artifact chunks are raw bytes and are not decoded here.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from edgewise_wire.errors import PayloadTooLarge, SchemaError
from edgewise_wire.manifest import Manifest, ProbationPolicy
from edgewise_wire.update_states import UPDATE_STATE_NAMES
from edgewise_wire.validation import (
    get_bool,
    get_dict,
    get_float,
    get_int,
    get_list,
    get_sha256,
    get_str,
    get_str_map,
)

SCHEMA_VERSION = 1

# Size bounds, checked before a payload is parsed. A manifest with smoke tests and a reference
# profile is a few tens of KiB; a telemetry batch of 500 records about 100 KiB.
MAX_CONTROL_BYTES = 1024 * 1024
MAX_TELEMETRY_BYTES = 4 * 1024 * 1024



@dataclass(frozen=True)
class ModelRef:
    model: str
    version: int
    sha256: str

    @classmethod
    def from_dict(cls, d: Any, ctx: str) -> ModelRef:
        if not isinstance(d, dict):
            raise SchemaError(f"{ctx} must be an object")
        return cls(get_str(d, "model", ctx, max_len=128), get_int(d, "version", ctx, minimum=0),
                   get_sha256(d, "sha256", ctx))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "sha256": self.sha256}

    def __str__(self) -> str:
        return f"{self.model}:{self.version}"


M = TypeVar("M", bound="Message")


class Message:
    TYPE: ClassVar[str]
    MAX_BYTES: ClassVar[int] = MAX_CONTROL_BYTES

    def body(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_body(cls: type[M], d: dict[str, Any]) -> M:
        raise NotImplementedError


def now() -> float:
    return time.time()


@dataclass(frozen=True)
class Presence(Message):
    """Retained on ``presence``; the offline form is the agent's last will."""

    TYPE: ClassVar[str] = "presence"
    online: bool
    ts: float = field(default_factory=now)
    agent_version: str = ""
    # the agent's configured device class; "" from an agent too old to report it (unknown)
    device_class: str = ""

    def body(self) -> dict[str, Any]:
        return {"online": self.online, "ts": self.ts, "agent_version": self.agent_version,
                "device_class": self.device_class}

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> Presence:
        return cls(get_bool(d, "online"), get_float(d, "ts"),
                   get_str(d, "agent_version", optional=True) or "",
                   _device_class(d))


@dataclass(frozen=True)
class ControllerPresence(Message):
    """Retained on ``{root}/controller/presence``: which controller runs the fleet under this
    topic root. ``instance`` is the controller's database (replicas of one database share it);
    ``replica`` the process that wrote this. The offline form is the writer's last will."""

    TYPE: ClassVar[str] = "controller_presence"
    instance: str
    online: bool
    replica: str = ""
    started_at: float = 0.0
    ts: float = field(default_factory=now)

    def body(self) -> dict[str, Any]:
        return {"instance": self.instance, "online": self.online, "replica": self.replica,
                "started_at": self.started_at, "ts": self.ts}

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> ControllerPresence:
        return cls(get_str(d, "instance", max_len=128), get_bool(d, "online"),
                   get_str(d, "replica", optional=True, max_len=256) or "",
                   get_float(d, "started_at", optional=True) or 0.0, get_float(d, "ts"))


# What a signed desired state carries in "manifest" (the manifest itself is inside "signed").
SIGNED_MANIFEST = "signed"


@dataclass(frozen=True)
class Desired(Message):
    """The device's desired model (retained). ``manifest`` None means: run no model.

    Signed form (``edgewise_wire.envelope``): ``envelope`` is the controller's signed manifest
    envelope and travels as ``"signed"``, with ``"manifest": "signed"`` (the manifest is inside it;
    :attr:`manifest` is parsed from it). ``rollback_order`` is a signed order that allows going
    to a version not above the running one, or to no model. ``probation`` overrides the
    manifest's health window (from the rollout); it is outside the signature and can only
    change when a verified model is committed, never which model runs. ``seal`` makes it
    single-use and names the one device it is for (``edgewise_wire.seal``).
    """

    TYPE: ClassVar[str] = "desired"
    deployment_id: str
    manifest: Manifest | None
    ts: float = field(default_factory=now)
    envelope: dict[str, Any] | None = None
    rollback_order: dict[str, Any] | None = None
    probation: ProbationPolicy | None = None
    seal: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        manifest: Any = None
        if self.envelope is not None:
            # not null: an agent from before signatures would read null as "run no model" and
            # unload; a string makes it drop the message as malformed and keep serving
            manifest = SIGNED_MANIFEST
        elif self.manifest is not None:
            manifest = self.manifest.to_dict()
        d: dict[str, Any] = {"deployment_id": self.deployment_id, "manifest": manifest,
                             "ts": self.ts}
        if self.envelope is not None:
            d["signed"] = self.envelope
        if self.rollback_order is not None:
            d["rollback_order"] = self.rollback_order
        if self.probation is not None:
            d["probation"] = self.probation.to_dict()
        if self.seal is not None:
            d["seal"] = self.seal
        return d

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> Desired:
        raw = d.get("manifest")
        envelope = get_dict(d, "signed", optional=True)
        if envelope is not None:
            if raw != SIGNED_MANIFEST:
                raise SchemaError(f"a signed desired state carries its manifest inside 'signed' "
                                  f"and {SIGNED_MANIFEST!r} in 'manifest'")
            raw = envelope.get("manifest")
            if raw is None:
                raise SchemaError("field 'signed' holds no 'manifest'")
        manifest = None
        if raw is not None:
            manifest = Manifest.from_dict(raw, "signed.manifest" if envelope else "manifest")
        probation = d.get("probation")
        return cls(get_str(d, "deployment_id", max_len=128), manifest, get_float(d, "ts"),
                   envelope=envelope,
                   rollback_order=get_dict(d, "rollback_order", optional=True),
                   probation=(ProbationPolicy.from_dict(probation)
                              if probation is not None else None),
                   seal=get_dict(d, "seal", optional=True))


@dataclass(frozen=True)
class DesiredAgent(Message):
    """The agent version the device should run (retained, on ``agent/desired``).

    ``signed``: the controller's signed agent manifest envelope
    (:func:`edgewise_wire.envelope.verify_agent_envelope`; the manifest is an
    :class:`~edgewise_wire.manifest.AgentManifest`), None: no agent version is asked for (the
    device keeps what it runs). ``rollout_id`` names the rollout that sent it, for the reports.
    ``seal``: the per-device freshness seal (:mod:`edgewise_wire.seal`) naming the digest of
    ``signed``, so a captured older agent order is refused once the device took a newer one
    (omitted when None: a controller from before sealed agent orders).
    Verified by the agent before anything is downloaded; never acted on unsigned.
    """

    TYPE: ClassVar[str] = "desired_agent"
    signed: dict[str, Any] | None
    rollout_id: str | None = None
    ts: float = field(default_factory=now)
    seal: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        d = {"signed": self.signed, "rollout_id": self.rollout_id, "ts": self.ts}
        if self.seal is not None:
            d["seal"] = self.seal
        return d

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> DesiredAgent:
        return cls(get_dict(d, "signed", optional=True),
                   get_str(d, "rollout_id", optional=True, max_len=128), get_float(d, "ts"),
                   get_dict(d, "seal", optional=True))


@dataclass(frozen=True)
class Reported(Message):
    """What the agent runs and where its update stands (retained)."""

    TYPE: ClassVar[str] = "reported"
    state: str
    active: ModelRef | None
    target: ModelRef | None = None
    deployment_id: str | None = None
    last_error: str | None = None
    progress: tuple[int, int] | None = None  # chunks received, chunks total
    labels: dict[str, str] = field(default_factory=dict)
    agent_version: str = ""
    ts: float = field(default_factory=now)
    # the agent's configured device class (agent.toml); "" from an agent too old to report it
    device_class: str = ""
    # the verified artifact waiting in the standby slot, and the model kept in the
    # previous slot for an instant rollback (omitted when none)
    staged: ModelRef | None = None
    previous: ModelRef | None = None
    # agent self-update under the launcher: {"running", "target", "state", "error"} (omitted
    # when the agent takes no agent bundles)
    agent_update: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        d = {
            "state": self.state,
            "active": self.active.to_dict() if self.active else None,
            "target": self.target.to_dict() if self.target else None,
            "deployment_id": self.deployment_id,
            "last_error": self.last_error,
            "progress": list(self.progress) if self.progress else None,
            "labels": self.labels,
            "agent_version": self.agent_version,
            "ts": self.ts,
            "device_class": self.device_class,
        }
        if self.staged is not None:
            d["staged"] = self.staged.to_dict()
        if self.previous is not None:
            d["previous"] = self.previous.to_dict()
        if self.agent_update is not None:
            d["agent_update"] = self.agent_update
        return d

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> Reported:
        state = get_str(d, "state")
        if state not in UPDATE_STATE_NAMES:
            raise SchemaError(f"field 'state' {state!r} is not one of {UPDATE_STATE_NAMES}")
        progress = get_list(d, "progress", optional=True, max_items=2)
        if progress is not None and (len(progress) != 2 or not all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in progress)):
            raise SchemaError("field 'progress' must be [received, total]")
        active = d.get("active")
        target = d.get("target")
        return cls(
            state=state,
            active=ModelRef.from_dict(active, "active") if active is not None else None,
            target=ModelRef.from_dict(target, "target") if target is not None else None,
            deployment_id=get_str(d, "deployment_id", optional=True, max_len=128),
            last_error=get_str(d, "last_error", optional=True),
            progress=(progress[0], progress[1]) if progress else None,
            labels=get_str_map(d, "labels"),
            agent_version=get_str(d, "agent_version", optional=True) or "",
            ts=get_float(d, "ts"),
            staged=_optional_ref(d, "staged"),
            previous=_optional_ref(d, "previous"),
            agent_update=get_dict(d, "agent_update", optional=True),
            device_class=_device_class(d),
        )


def _device_class(d: dict[str, Any]) -> str:
    """The reported device class as the agent has it configured, "" when not reported. Not
    checked against the class-name rule: the controller compares it as the agent does
    (``edgewise_wire.envelope.check_class_target``), so a name no version can carry stays one
    of another class than every class-specific version."""
    return get_str(d, "device_class", optional=True, max_len=64) or ""


def _optional_ref(d: dict[str, Any], key: str) -> ModelRef | None:
    raw = d.get(key)
    return ModelRef.from_dict(raw, key) if raw is not None else None


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


@dataclass(frozen=True)
class ArtifactRequest(Message):
    """Agent -> controller: please (re)publish these chunk ranges ([start, end), end exclusive)."""

    TYPE: ClassVar[str] = "art_req"
    sha256: str
    ranges: tuple[tuple[int, int], ...]

    def body(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "ranges": [list(r) for r in self.ranges]}

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> ArtifactRequest:
        sha = get_sha256(d, "sha256")
        ranges = []
        for r in get_list(d, "ranges", max_items=10_000):
            if (not isinstance(r, list) or len(r) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) for x in r)
                    or not 0 <= r[0] < r[1]):
                raise SchemaError(f"range {r!r} must be [start, end) with 0 <= start < end")
            ranges.append((r[0], r[1]))
        return cls(sha, tuple(ranges))


MAX_LOG_LINES = 1000


@dataclass(frozen=True)
class LogsRequest(Message):
    """Controller -> agent: send the log lines of your ring logged at or after ``since_ts``
    (the newest ``max_lines`` of them). ``request_id`` comes back in the reply."""

    TYPE: ClassVar[str] = "logs_req"
    request_id: str
    since_ts: float = 0.0
    max_lines: int = 200

    def body(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "since_ts": self.since_ts,
                "max_lines": self.max_lines}

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> LogsRequest:
        return cls(get_str(d, "request_id", max_len=64), get_float(d, "since_ts"),
                   min(get_int(d, "max_lines", minimum=0), MAX_LOG_LINES))


@dataclass(frozen=True)
class LogsReply(Message):
    """Agent -> controller: recent log lines, oldest first, each ``{ts, level, logger,
    message}``; ``dropped``: lines the ring has pushed out since the agent started."""

    TYPE: ClassVar[str] = "logs"
    request_id: str
    lines: list[dict[str, Any]]
    dropped: int = 0

    def body(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "lines": self.lines, "dropped": self.dropped}

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> LogsReply:
        lines = get_list(d, "lines", max_items=MAX_LOG_LINES)
        for i, line in enumerate(lines):
            ctx = f"lines[{i}]"
            if not isinstance(line, dict):
                raise SchemaError(f"{ctx} must be an object")
            get_float(line, "ts", ctx)
            get_str(line, "level", ctx, max_len=16)
            get_str(line, "logger", ctx, max_len=128)
            get_str(line, "message", ctx, max_len=4096)
        return cls(get_str(d, "request_id", max_len=64), lines,
                   get_int(d, "dropped", minimum=0))


@dataclass(frozen=True)
class SamplingOrder(Message):
    """Controller -> agent, retained on the device's ``sampling`` topic: the share of its
    predictions whose records the device keeps, set by the operator for a group of devices
    (``edgewise data sampling set``). ``share`` None: the agent's own
    ``prediction_sample_rate`` applies again. ``selector``: the group it was set for (shown
    only)."""

    TYPE: ClassVar[str] = "sampling"
    share: float | None
    selector: str = ""

    def body(self) -> dict[str, Any]:
        return {"share": self.share, "selector": self.selector}

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> SamplingOrder:
        share = get_float(d, "share", optional=True)
        if share is not None and not 0.0 < share <= 1.0:
            raise SchemaError(f"field 'share' must be within (0, 1], got {share!r}")
        selector = d.get("selector", "")
        return cls(share, get_str(d, "selector", max_len=1024) if selector else "")


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls for cls in (Presence, ControllerPresence, Desired, DesiredAgent, Reported,
                              TelemetryBatch, Ack, ArtifactRequest, LogsRequest, LogsReply,
                              SamplingOrder)
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


__all__ = [
    "Ack",
    "ArtifactRequest",
    "Desired",
    "LogsReply",
    "LogsRequest",
    "SamplingOrder",
    "Manifest",
    "Message",
    "ModelRef",
    "Presence",
    "Reported",
    "TelemetryBatch",
    "decode",
    "encode",
]
