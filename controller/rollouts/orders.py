"""What a rollout decision sends: a signed desired state per device of a wave, the reverts of an
abort (each with a signed rollback order), and the audit entries that record them. Nothing here
is sent before the runner has saved the decision; :meth:`RolloutOrders.send` publishes after.
An agent rollout's orders (``desired_agent``, no recorded desired model) come from
:mod:`.agent_orders`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence

from controller.audit.store import AuditEntry
from controller.errors import ConflictError, NotFoundError
from controller.fleet.device_registry import DeviceRow
from controller.fleet.versions import ModelVersion, Version
from controller.models.registry import ModelRegistry
from controller.rollouts.agent_orders import AgentOrders
from controller.rollouts.decisions import (
    Abort,
    Advance,
    Complete,
    Decision,
    Fail,
    Pause,
    decision_to_dict,
)
from controller.rollouts.engine import RolloutState, Status
from controller.rollouts.store import DesiredChange, RolloutRecord
from controller.security.desired_signer import DesiredSigner
from edgewise_wire import Desired, DesiredAgent, Manifest, ProbationPolicy

log = logging.getLogger("edgewise.controller.rollouts")

Publish = Callable[[str, Desired], None]
# a device and what is published to it: a desired model, or (agent rollouts) a desired agent
Outgoing = tuple[str, Desired | DesiredAgent]


class RolloutOrders:
    def __init__(self, registry: ModelRegistry, publish: Publish, signer: DesiredSigner | None,
                 stats: Counter[str]) -> None:
        self.registry = registry
        self.signer = signer
        self.stats = stats
        self._publish = publish
        self._manifests: dict[ModelVersion, Manifest] = {}
        self.agents: AgentOrders | None = None  # set by a controller that has agent bundles

    async def for_decision(self, record: RolloutRecord, before: RolloutState, after: RolloutState,
                   decision: Decision, rows: Mapping[str, DeviceRow]
                   ) -> tuple[list[DesiredChange], list[Outgoing], list[AuditEntry]]:
        """The desired states, messages and audit entries a decision implies (nothing sent)."""
        if isinstance(decision, Advance) and record.spec.kind == "agent":
            top_up = decision.wave == before.wave
            detail = {"wave": decision.wave + 1, "wave_count": before.wave_count,
                      "version": f"agent {record.spec.agent_version}",
                      "previous": {d: None if p is None else str(p)
                                   for d, p in decision.previous.items()}}
            return [], list(await self.agent_orders().wave(record, decision.devices)), [
                AuditEntry("rollout.late_joiners_sent" if top_up else "rollout.wave_started",
                           devices=decision.devices, detail=detail)]
        if isinstance(decision, Advance):
            manifest = await self.manifest(record.target)
            top_up = decision.wave == before.wave
            detail = {"wave": decision.wave + 1, "wave_count": before.wave_count,
                      "version": str(record.target),
                      "previous": {d: None if p is None else str(p)
                                   for d, p in decision.previous.items()}}
            # what each device ran when the engine decided: a rollout to a version not above
            # it (a downgrade rollout) carries a signed rollback order per device
            messages = await self.desired(
                record.deployment_id, manifest, {d: _model(decision.previous.get(d))
                                                 for d in decision.devices},
                rows, probation=record.spec.probation)
            return ([DesiredChange(decision.devices, record.target, record.deployment_id)],
                    list(messages),
                    [AuditEntry("rollout.late_joiners_sent" if top_up else "rollout.wave_started",
                                devices=decision.devices, detail=detail)])
        if isinstance(decision, Abort):
            desired, reverts, missing = await self.reverts(record, decision.revert, rows)
            detail = decision_to_dict(decision)
            if missing:
                detail["cannot_revert"] = missing
            return desired, reverts, [AuditEntry("rollout.aborted", devices=list(decision.revert),
                                                  detail=detail)]
        if isinstance(decision, Pause):
            return [], [], [AuditEntry("rollout.paused", detail=decision_to_dict(decision))]
        if isinstance(decision, Complete):
            action = "rollout.reverted" if before.status is Status.ABORTING else "rollout.completed"
            return [], [], [AuditEntry(action, detail={"why": decision.why})]
        if isinstance(decision, Fail):
            return [], [], [AuditEntry("rollout.failed", devices=decision.unconfirmed,
                                       detail={"why": decision.why})]
        if after.status is not before.status:  # a Wait that flips RUNNING <-> SOAKING
            action = "rollout.soak_started" if after.status is Status.SOAKING else \
                "rollout.soak_interrupted"
            return [], [], [AuditEntry(action, detail={"wave": after.wave + 1,
                                                       "why": decision.why})]
        return [], [], []

    async def reverts(self, record: RolloutRecord, revert: Mapping[str, Version | None],
                       rows: Mapping[str, DeviceRow]
                       ) -> tuple[list[DesiredChange], list[Outgoing], list[str]]:
        """Put each device back on what it ran; a device that ran nothing is told to run
        nothing (``manifest`` None: the agent unloads its model). Every revert carries a
        signed rollback order: the device may run the rollout's version by now. An agent
        rollout sends each device its previous agent version instead."""
        if record.spec.kind == "agent":
            sent_back, unknown = await self.agent_orders().reverts(record, revert)
            return [], list(sent_back), unknown
        groups: dict[ModelVersion | None, list[str]] = defaultdict(list)
        for device, previous in sorted(revert.items()):
            groups[previous if isinstance(previous, ModelVersion) else None].append(device)
        desired: list[DesiredChange] = []
        messages: list[Outgoing] = []
        missing: list[str] = []
        for previous, devices in groups.items():
            manifest = None
            if previous is not None:
                try:
                    manifest = await self.manifest(previous)
                except NotFoundError:
                    missing += devices  # unknown to this registry: cannot be put back
                    log.error("rollout %s: cannot revert %d devices to %s: not in the registry",
                              record.label, len(devices), previous)
                    continue
            desired.append(DesiredChange(devices, previous, record.revert_deployment_id))
            messages += await self.desired(
                record.revert_deployment_id, manifest,
                {d: (r.active if (r := rows.get(d)) else None) for d in devices}, rows,
                revert_of=record.spec.model)
        return desired, messages, missing

    async def desired(self, deployment_id: str, manifest: Manifest | None,
                       running: Mapping[str, ModelVersion | None],
                       rows: Mapping[str, DeviceRow], *,
                       probation: ProbationPolicy | None = None,
                       revert_of: str | None = None) -> list[tuple[str, Desired]]:
        """One desired state per device of ``running`` (device -> the model it runs), signed
        when there is a signer; the devices' reported update targets count as versions they
        may reach first (see ``controller.security.desired_signer.rollback_target``)."""
        if self.signer is None:
            message = Desired(deployment_id, manifest, probation=probation)
            return [(d, message) for d in running]
        pending = {d: r.target for d in running if (r := rows.get(d)) is not None}
        # the wall clock, not the tick's ``now``: devices judge expiry by theirs
        return await asyncio.to_thread(self.signer.for_devices, deployment_id, manifest,
                                       running, now=time.time(), probation=probation,
                                       pending=pending, revert_of=revert_of)

    async def reference_accuracy(self, version: ModelVersion) -> float | None:
        try:
            parity = (await self.manifest(version)).parity
        except NotFoundError:
            return None
        value = parity.get("artifact_accuracy") if isinstance(parity, dict) else None
        return float(value) if isinstance(value, (int, float)) and 0 <= value <= 1 else None

    def send(self, messages: Sequence[Outgoing]) -> None:
        for device, message in messages:
            if isinstance(message, DesiredAgent):
                self.agent_orders().send([(device, message)])
                self.stats["desired_agent_published"] += 1
            else:
                self._publish(device, message)
                self.stats["desired_published"] += 1

    def agent_orders(self) -> AgentOrders:
        if self.agents is None:
            raise ConflictError("this controller has no agent bundles to roll out")
        return self.agents

    async def manifest(self, version: ModelVersion) -> Manifest:
        cached = self._manifests.get(version)
        if cached is None:
            cached = await asyncio.to_thread(self.registry.get_manifest, version.model,
                                             version.version)
            self._manifests[version] = cached
        return cached


def _model(version: Version | None) -> ModelVersion | None:
    """A model rollout's record of what a device ran (never an agent version)."""
    return version if isinstance(version, ModelVersion) else None
