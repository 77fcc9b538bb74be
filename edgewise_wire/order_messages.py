"""The controller's retained orders to a device: the model it should run (``desired``), the
agent version it should run (``desired_agent``) and the share of predictions it keeps
(``sampling``). An experiment's order is :mod:`edgewise_wire.experiments`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from edgewise_wire.errors import SchemaError
from edgewise_wire.manifest import Manifest, ProbationPolicy
from edgewise_wire.message_base import Message, now
from edgewise_wire.validation import get_dict, get_float, get_str

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
