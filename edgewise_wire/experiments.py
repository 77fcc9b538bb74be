"""Experiments on the wire: the order a device runs a candidate by, and the window it reports.

**The order** (:class:`ExperimentOrder`, retained on the device's ``experiment`` topic): which
experiment, its mode, the *control* (the version the device serves) and the *candidate*, as a
signed manifest envelope exactly like a desired state's (the device verifies it with the same
trusted keys and downloads the artifact through the same chunked, resumable path into its own
verified slot). ``mode``:

- ``"shadow"``: the control serves every request; the candidate answers a ``sample`` share of
  them off the serving path, and the device compares the two.
- ``"ab"``: requests are split; a request whose application passes a key goes to the candidate
  when :func:`request_arm` says so (a stable hash of the key, so one user sticks to one arm), a
  ``share`` of them. (A split *by device* is the controller's: it gives the candidate to a share
  of the selected devices as an ordinary desired state.)
- ``"stop"``: drop the candidate and its slot; the control goes on serving.

**The window** (a telemetry record of kind ``"experiment"``, :func:`validate_window`): per arm
(``control`` and ``candidate``) the rows answered, labelled rows and right answers, latency sums,
the session's memory; for shadow mode the rows both answered, how many answers agreed, the
confusion between their answers (``[[control label, candidate label, count], ...]``), the paired
tally on labelled rows, and the rows the shadow skipped (queue full, over budget) or failed on.
A device that refuses the candidate (it cannot hold two sessions within its budget, or the
envelope does not verify) reports a window with ``refused`` set to the reason, once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from edgewise_wire.errors import SchemaError
from edgewise_wire.manifest import Manifest
from edgewise_wire.message_base import Message, ModelRef, now
from edgewise_wire.order_messages import SIGNED_MANIFEST
from edgewise_wire.validation import get_dict, get_float, get_int, get_str

EXPERIMENT_KIND = "experiment"
MODES = ("shadow", "ab", "stop")
ARMS = ("control", "candidate")
MAX_CONFUSION_CELLS = 1024
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def _share(d: dict[str, Any], key: str, ctx: str) -> float:
    value = get_float(d, key, ctx)
    if not 0.0 <= value <= 1.0:
        raise SchemaError(f"{ctx}.{key} must lie in [0, 1], got {value}")
    return value


def validate_experiment_id(value: str) -> str:
    if not value or len(value) > 64 or not set(value) <= _ID_CHARS:
        raise SchemaError(f"experiment id {value!r} must be 1-64 of a-z, 0-9, '-', '_'")
    return value


@dataclass(frozen=True)
class ExperimentOrder(Message):
    """Controller -> agent, retained: run (or stop) an experiment (module docstring)."""

    TYPE: ClassVar[str] = "experiment"
    experiment_id: str
    mode: str
    control: ModelRef | None = None
    candidate: Manifest | None = None
    envelope: dict[str, Any] | None = None  # the candidate's signed manifest envelope
    sample: float = 1.0
    share: float = 0.0
    ts: float = field(default_factory=now)

    def body(self) -> dict[str, Any]:
        candidate: Any = None
        if self.envelope is not None:
            candidate = SIGNED_MANIFEST
        elif self.candidate is not None:
            candidate = self.candidate.to_dict()
        return {"experiment_id": self.experiment_id, "mode": self.mode,
                "control": self.control.to_dict() if self.control else None,
                "candidate": candidate, "signed": self.envelope, "sample": self.sample,
                "share": self.share, "ts": self.ts}

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> ExperimentOrder:
        experiment_id = validate_experiment_id(get_str(d, "experiment_id", max_len=64))
        mode = get_str(d, "mode")
        if mode not in MODES:
            raise SchemaError(f"field 'mode' must be one of {MODES}, got {mode!r}")
        control = ModelRef.from_dict(d["control"], "control") \
            if d.get("control") is not None else None
        envelope = get_dict(d, "signed", optional=True)
        raw = d.get("candidate")
        candidate: Manifest | None = None
        if raw == SIGNED_MANIFEST:
            if envelope is None:
                raise SchemaError("candidate 'signed' without its envelope")
            candidate = Manifest.from_dict(envelope.get("manifest"), "signed.manifest")
        elif raw is not None:
            candidate = Manifest.from_dict(raw, "candidate")
        if mode != "stop" and (candidate is None or control is None):
            raise SchemaError(f"a {mode} order needs a control and a candidate")
        return cls(experiment_id, mode, control, candidate, envelope,
                   _share(d, "sample", "order"), _share(d, "share", "order"), get_float(d, "ts"))


def request_arm(experiment_id: str, key: str, share: float) -> str:
    """``"candidate"`` or ``"control"`` for a request key: a stable hash of the experiment and
    the key, so one key always lands on one arm of one experiment, and two experiments split
    independently. ``share`` in [0, 1] goes to the candidate."""
    digest = hashlib.sha256(f"{experiment_id}\x00{key}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    return "candidate" if point < share else "control"


_ARM_INTS = ("rows", "labelled", "correct", "errors")
_ARM_FLOATS = ("latency_sum", "latency_sumsq")


def validate_window(record: Any, ctx: str = "experiment window") -> dict[str, Any]:
    """Check an ``experiment`` telemetry record; raise :class:`SchemaError` naming the field."""
    if not isinstance(record, dict):
        raise SchemaError(f"{ctx} must be an object")
    validate_experiment_id(get_str(record, "experiment_id", ctx, max_len=64))
    mode = get_str(record, "mode", ctx)
    if mode not in ("shadow", "ab"):
        raise SchemaError(f"{ctx}.mode must be 'shadow' or 'ab', got {mode!r}")
    get_float(record, "ts", ctx)
    get_float(record, "start_ts", ctx)
    if record.get("refused") is not None:
        get_str(record, "refused", ctx, max_len=500)
        return record
    arms = get_dict(record, "arms", ctx)
    for arm in ARMS:
        a = get_dict(arms, arm, f"{ctx}.arms")
        for key in _ARM_INTS:
            get_int(a, key, f"{ctx}.arms.{arm}", minimum=0)
        for key in _ARM_FLOATS:
            get_float(a, key, f"{ctx}.arms.{arm}")
        if not isinstance(a.get("latency", {}), dict):
            raise SchemaError(f"{ctx}.arms.{arm}.latency must be a latency histogram object")
        if a.get("memory_bytes") is not None:
            get_int(a, "memory_bytes", f"{ctx}.arms.{arm}", minimum=0)
    if mode == "shadow":
        shadow = get_dict(record, "shadow", ctx)
        for key in ("compared", "agreed", "skipped", "failed", "slow"):
            get_int(shadow, key, f"{ctx}.shadow", minimum=0)
        paired = get_dict(shadow, "paired", f"{ctx}.shadow")
        for key in ("n", "d_abs"):
            get_int(paired, key, f"{ctx}.shadow.paired", minimum=0)
        get_int(paired, "d_sum", f"{ctx}.shadow.paired")
        confusion = shadow.get("confusion")
        if not isinstance(confusion, list) or len(confusion) > MAX_CONFUSION_CELLS:
            raise SchemaError(f"{ctx}.shadow.confusion must be a list of at most "
                              f"{MAX_CONFUSION_CELLS} cells")
        for cell in confusion:
            if not (isinstance(cell, list) and len(cell) == 3 and isinstance(cell[2], int)
                    and not isinstance(cell[2], bool) and cell[2] >= 0):
                raise SchemaError(f"{ctx}.shadow.confusion cells are [control, candidate, "
                                  "count]")
    return record
