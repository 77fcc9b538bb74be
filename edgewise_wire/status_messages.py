"""Who is online and what a device runs: the retained status messages. ``presence`` (the
agent's, its offline form the agent's last will), ``controller_presence`` (which controller
runs the fleet under a topic root) and ``reported`` (the device's models and where its update
stands).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from edgewise_wire.errors import SchemaError
from edgewise_wire.message_base import Message, ModelRef, now
from edgewise_wire.update_states import UPDATE_STATE_NAMES
from edgewise_wire.validation import get_bool, get_dict, get_float, get_list, get_str, get_str_map


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
