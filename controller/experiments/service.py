"""Starting, watching, stopping and promoting experiments: the I/O around the pure core.

The service receives what it uses as callables (the composition root, ``controller/app``, builds
them): the registry's manifests, the fleet's device rows, the devices held by live rollouts, the
bridge's publish of an order, the desired-state signer's envelope, and the rollout runner's
``create`` (a promotion is an ordinary rollout, with its waves and gates).

Every refusal happens before anything is stored or sent (:func:`controller.experiments.spec.
check`). Orders are retained on each device's ``experiment`` topic: a device that reconnects, or
restarts, gets its order again, and a restarted controller has nothing to resend but the orders
whose signature is getting old (:meth:`ExperimentService.refresh`, which the leader calls
periodically). Start, stop and promote are audited.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from controller.audit.store import AuditEntry
from controller.errors import ConflictError
from controller.experiments.results import summarise
from controller.experiments.spec import (
    ExperimentError,
    ExperimentSpec,
    check,
    spec_from_dict,
    split_devices,
)
from controller.experiments.store import (
    PROMOTED,
    RUNNING,
    STOPPED,
    ExperimentRecord,
    ExperimentStore,
)
from controller.fleet.selectors import parse_selector
from edgewise_monitoring.experiment_test import Design
from edgewise_wire import Manifest, ModelRef
from edgewise_wire.experiments import ExperimentOrder

log = logging.getLogger("edgewise.controller.experiments")


class DeviceView(Protocol):
    """What the service reads of a device (``controller.fleet.device_registry.DeviceRow``)."""

    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def active(self) -> Any: ...  # a (model, version) pair or None


ManifestOf = Callable[[str, int], Manifest]
Publish = Callable[[str, ExperimentOrder], None]
Sign = Callable[[Manifest, float], dict[str, Any]]
StartRollout = Callable[[Mapping[str, Any], str], Awaitable[dict[str, Any]]]


class ExperimentService:
    def __init__(self, store: ExperimentStore, manifest_of: ManifestOf,
                 device_rows: Callable[[], Mapping[str, DeviceView]],
                 rollout_devices: Callable[[], Mapping[str, str]], publish: Publish,
                 sign: Sign | None, start_rollout: StartRollout, *,
                 resign_after_s: float = 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.manifest_of = manifest_of
        self.device_rows = device_rows
        self.rollout_devices = rollout_devices
        self.publish = publish
        self.sign = sign
        self.start_rollout = start_rollout
        self.resign_after_s = resign_after_s
        self.clock = clock
        self._lock = asyncio.Lock()

    # -- start ---------------------------------------------------------------------------

    async def start(self, body: Mapping[str, Any], actor: str) -> dict[str, Any]:
        spec = spec_from_dict(body)
        async with self._lock:
            candidate = await asyncio.to_thread(self.manifest_of, spec.candidate.model,
                                                spec.candidate.version)
            control = await asyncio.to_thread(self.manifest_of, spec.control.model,
                                              spec.control.version)
            rows = await asyncio.to_thread(self.device_rows)
            selector = parse_selector(spec.selector)
            targets = sorted(d for d, r in rows.items() if selector.matches(r.labels))
            serving = {d: (tuple(rows[d].active) if rows[d].active is not None else None)
                       for d in targets}
            in_rollouts = await asyncio.to_thread(self.rollout_devices)
            busy = {d for r in await asyncio.to_thread(self.store.query, RUNNING)
                    for d in r.arms}
            taken = sorted(d for d in targets if d in busy)
            if taken:
                raise ExperimentError(f"{len(taken)} device(s) are in a running experiment: "
                                      f"{', '.join(taken[:5])}; stop it or narrow the selector")
            check(spec, candidate, control, targets=targets,
                  serving=serving,
                  in_rollouts=in_rollouts)
            experiment_id = "exp-" + os.urandom(4).hex()
            arms = self._arms(experiment_id, spec, targets)
            now = self.clock()
            record = ExperimentRecord(
                experiment_id, spec.display_name, spec.mode, spec.candidate.model,
                spec.candidate.version, spec.control.version, spec.to_dict(), arms, RUNNING,
                "running", now, actor, None, now, None)
            await asyncio.to_thread(self.store.create, record, [AuditEntry(
                "experiment.started", actor=actor, devices=targets,
                detail={"experiment_id": experiment_id, "spec": spec.to_dict(),
                        "candidate_devices": sorted(d for d, a in arms.items()
                                                    if a != "control")})])
            self._send(record, candidate, control, now)
        log.info("experiment %s started by %s: %s on %d devices", experiment_id, actor,
                 spec.display_name, len(targets))
        return await self.view(experiment_id)

    @staticmethod
    def _arms(experiment_id: str, spec: ExperimentSpec, targets: list[str]) -> dict[str, str]:
        if spec.mode == "shadow":
            return dict.fromkeys(targets, "both")
        if spec.split == "request":
            return dict.fromkeys(targets, "both")
        chosen = set(split_devices(experiment_id, targets, spec.share))
        return {d: ("candidate" if d in chosen else "control") for d in targets}

    def _orders(self, record: ExperimentRecord, candidate: Manifest, control: Manifest,
                now: float) -> dict[str, ExperimentOrder]:
        envelope = self.sign(candidate, now) if self.sign is not None else None
        control_ref = ModelRef(control.model, control.version, control.artifact.sha256)
        spec = record.spec
        orders = {}
        for device, arm in record.arms.items():
            if record.mode == "shadow":
                share = 0.0
            elif arm == "both":
                share = float(spec["share"])
            else:
                share = 1.0 if arm == "candidate" else 0.0
            orders[device] = ExperimentOrder(
                record.experiment_id, record.mode, control_ref, candidate, envelope,
                float(spec["sample"]), share, ts=now)
        return orders

    def _send(self, record: ExperimentRecord, candidate: Manifest, control: Manifest,
              now: float) -> None:
        for device, order in self._orders(record, candidate, control, now).items():
            self.publish(device, order)

    # -- stop and promote -------------------------------------------------------------------

    async def stop(self, experiment_id: str, actor: str, reason: str = "") -> dict[str, Any]:
        async with self._lock:
            record = await asyncio.to_thread(self.store.get, experiment_id)
            if record.status != RUNNING:
                raise ConflictError(f"experiment {experiment_id} is already {record.status}")
            now = self.clock()
            await asyncio.to_thread(
                self.store.update, experiment_id,
                [AuditEntry("experiment.stopped", actor=actor, devices=sorted(record.arms),
                            detail={"experiment_id": experiment_id, "reason": reason})],
                now, status=STOPPED, stopped_at=now)
            self._send_stop(record, now)
        return await self.view(experiment_id)

    def _send_stop(self, record: ExperimentRecord, now: float) -> None:
        for device in record.arms:
            self.publish(device, ExperimentOrder(record.experiment_id, "stop", ts=now))

    async def promote(self, experiment_id: str, actor: str,
                      rollout: Mapping[str, Any] | None = None,
                      force: bool = False) -> dict[str, Any]:
        """Stop the experiment and start a rollout of its candidate on its devices' selector
        (``rollout``: the rollout spec's other keys, waves and gates). Refused unless the test
        declared the candidate better, or ``force``."""
        view = await self.view(experiment_id)
        record = await asyncio.to_thread(self.store.get, experiment_id)
        if record.status == PROMOTED:
            raise ConflictError(f"experiment {experiment_id} was already promoted "
                                f"(rollout #{record.rollout_id})")
        verdict = view["comparison"]["verdict"]
        if verdict != "candidate_better" and not force:
            raise ConflictError(
                f"experiment {experiment_id} has not declared the candidate better (verdict: "
                f"{verdict}); wait for the test, or promote with --force")
        now = self.clock()
        if record.status == RUNNING:
            self._send_stop(record, now)
        body = {**(rollout or {}), "model": record.model, "version": record.candidate_version,
                "selector": record.spec.get("selector", "")}
        body.setdefault("name", f"{record.model}:{record.candidate_version} "
                                f"(promoted from {experiment_id})")
        started = await self.start_rollout(body, actor)
        await asyncio.to_thread(
            self.store.update, experiment_id,
            [AuditEntry("experiment.promoted", actor=actor, rollout_id=int(started["id"]),
                        devices=sorted(record.arms),
                        detail={"experiment_id": experiment_id, "verdict": verdict,
                                "forced": force and verdict != "candidate_better"})],
            now, status=PROMOTED, stopped_at=record.stopped_at or now,
            rollout_id=int(started["id"]))
        return {**(await self.view(experiment_id)), "rollout": started}

    # -- keeping orders fresh ---------------------------------------------------------------

    async def refresh(self) -> int:
        """Re-sign and publish the orders of running experiments signed more than
        ``resign_after_s`` ago (their envelopes expire like desired states'); returns how many
        experiments were refreshed."""
        now = self.clock()
        refreshed = 0
        async with self._lock:
            for record in await asyncio.to_thread(self.store.query, RUNNING):
                if now - record.signed_at < self.resign_after_s:
                    continue
                candidate = await asyncio.to_thread(self.manifest_of, record.model,
                                                    record.candidate_version)
                control = await asyncio.to_thread(self.manifest_of, record.model,
                                                  record.control_version)
                self._send(record, candidate, control, now)
                await asyncio.to_thread(self.store.update, record.experiment_id, (), now,
                                        signed_at=now)
                refreshed += 1
        return refreshed

    # -- views --------------------------------------------------------------------------------

    async def view(self, experiment_id: str) -> dict[str, Any]:
        record = await asyncio.to_thread(self.store.get, experiment_id)
        windows = await asyncio.to_thread(self.store.windows, experiment_id)
        design = Design.from_dict(record.spec["design"])
        results = summarise(record.mode, design, windows)
        verdict = results["comparison"]["verdict"]
        if verdict != record.verdict:
            await asyncio.to_thread(self.store.update, experiment_id, verdict=verdict)
        return {"id": record.experiment_id, "name": record.name, "mode": record.mode,
                "model": record.model, "candidate": record.candidate_version,
                "control": record.control_version, "status": record.status,
                "verdict": verdict, "created_at": record.created_at,
                "created_by": record.created_by, "stopped_at": record.stopped_at,
                "rollout_id": record.rollout_id, "spec": record.spec,
                "devices": {"candidate": sorted(d for d, a in record.arms.items()
                                                if a == "candidate"),
                            "control": sorted(d for d, a in record.arms.items() if a == "control"),
                            "both": sorted(d for d, a in record.arms.items() if a == "both")},
                **results}

    async def list_views(self, limit: int = 50) -> list[dict[str, Any]]:
        records = await asyncio.to_thread(self.store.query, None, limit)
        return [{"id": r.experiment_id, "name": r.name, "mode": r.mode, "model": r.model,
                 "candidate": r.candidate_version, "control": r.control_version,
                 "status": r.status, "verdict": r.verdict, "devices": len(r.arms),
                 "created_at": r.created_at, "rollout_id": r.rollout_id} for r in records]
