"""The rollout runner: the I/O around the pure engine (``controller/rollouts``).

Every ``interval`` seconds, while the controller is connected to the broker, for each rollout
that owns devices: read what the devices report and the figures of the wave, ask the engine
(``decide``), persist the new state together with the desired model of every device it orders
(one transaction, compare-and-swap on the rollout's revision), and only then publish the desired
states and write the audit log (same transaction as the state). So:

* a controller killed at any moment resumes from the stored state; what it may not have
  published yet is recorded in ``devices.desired_*`` and is published again on (re)connect
  (:meth:`RolloutRunner.republish`), and it never orders a device two things: the recorded
  desired state is the single order, and it changes only with the state;
* two replicas, or the runner and an operator, never both act on one state: the second save
  fails (:class:`~controller.rollouts.store.StaleRollout`) and nothing is published for it.

Operator actions (create, pause, resume, abort) and the legacy all-at-once deployment go through
the same lock and the same saves.

One module on purpose, about 430 lines: the loop and the operator actions share one lock, one
store and one compare-and-swap on the rollout's revision; the orders a decision sends
(:mod:`.orders`) and what a wave is judged on (:mod:`.wave_observer`) are apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from controller.agent_bundles.registry import AgentBundles
from controller.audit.store import AuditLog
from controller.errors import ConflictError, NotFoundError, ValidationError
from controller.fleet.device_registry import DeviceRegistry, DeviceRow
from controller.fleet.selectors import parse_selector
from controller.fleet.store import FleetStore
from controller.fleet.versions import AgentVersion
from controller.models.registry import ModelRegistry
from controller.rollouts.agent_orders import AgentOrders, PublishAgent
from controller.rollouts.conflicts import check_conflict
from controller.rollouts.decisions import (
    Abort,
    Decision,
    Wait,
    decision_to_dict,
)
from controller.rollouts.device_classes import skipped_text, split_by_class
from controller.rollouts.engine import (
    RolloutState,
    Status,
    TransitionError,
    admit_late_joiners,
    apply,
    decide,
    initial_state,
    operator_abort,
    operator_pause,
    release_devices,
    resume,
    skip_devices,
)
from controller.rollouts.gates import DeviceObservation, ModelVersion
from controller.rollouts.observations import (
    CostSource,
    FiguresSource,
    MetricsFirstFigures,
    Ownership,
    TelemetryFigures,
    observe,
    observe_agents,
    plan_ownership,
    rollout_view,
)
from controller.rollouts.orders import Outgoing, RolloutOrders
from controller.rollouts.spec import RolloutSpec, SpecError
from controller.rollouts.spec_checks import validate
from controller.rollouts.spec_parse import spec_from_dict, spec_to_dict
from controller.rollouts.store import (
    LIVE,
    OWNING,
    AuditEntry,
    DesiredChange,
    RolloutRecord,
    RolloutStore,
    StaleRollout,
    rollout_of,
)
from controller.rollouts.wave_observer import WaveObserver
from controller.security.desired_signer import DesiredSigner
from controller.storage.db import Database
from edgewise_wire import Desired

log = logging.getLogger("edgewise.controller.rollouts")

Publish = Callable[[str, Desired], None]
_SHOWN = 10


class RolloutRunner:
    def __init__(self, db: Database, registry: ModelRegistry, fleet: FleetStore,
                 publish: Publish, connection: Callable[[], int | None], *,
                 metrics: FiguresSource | None = None, figures: FiguresSource | None = None,
                 interval: float = 0.5, leader: Callable[[], int | None] | None = None,
                 signer: DesiredSigner | None = None,
                 devices: DeviceRegistry | None = None,
                 costs: CostSource | None = None,
                 agent_bundles: AgentBundles | None = None,
                 publish_agent: PublishAgent | None = None) -> None:
        """``connection()``: a number that changes with every (re)connection to the broker,
        None while disconnected. ``metrics``: the monitoring store (figures from agent windows,
        drift included); devices without windows fall back to raw telemetry. ``figures``
        replaces both. ``leader()``: the term of this replica's lease, None while
        another replica decides; the loop acts only while it holds one. ``signer``
        signs every desired state; without one they go out unsigned (devices in development
        mode only: the controller always passes one). ``costs``: each version's resource cost
        per device (device health windows), for the resource gates; without it they stay
        pending. ``agent_bundles`` and ``publish_agent``: what agent rollouts send (a
        ``desired_agent`` on the device's ``agent/desired`` channel); without them agent
        rollouts are refused."""
        self.store = RolloutStore(db)
        self.devices = devices or DeviceRegistry(db, fleet)
        self.audit = AuditLog(db)
        self.registry = registry
        self.figures = figures or MetricsFirstFigures(metrics, TelemetryFigures(db))
        self.interval = interval
        self.stats: Counter[str] = Counter()
        self._publish = publish
        self._connection = connection
        self._leader = leader
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        # the (connection, lease term) whose orders were published again
        self._synced: tuple[int, int | None] | None = None
        self.orders = RolloutOrders(registry, publish, signer, self.stats)
        if agent_bundles is not None and publish_agent is not None:
            self.orders.agents = AgentOrders(agent_bundles, publish_agent,
                                             lambda: self.orders.signer)
        self.observer = WaveObserver(self.figures, self.orders.reference_accuracy, costs)

    @property
    def signer(self) -> DesiredSigner | None:
        """Signs every desired state; None sends them unsigned (devices in development mode)."""
        return self.orders.signer

    @signer.setter
    def signer(self, signer: DesiredSigner | None) -> None:
        self.orders.signer = signer

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        corrupt = await asyncio.to_thread(self.store.corrupt)
        if corrupt:
            log.error("rollouts %s cannot be read and are left alone", corrupt)
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                connection = self._connection()
                term = self._leader() if self._leader is not None else 0
                if connection is not None and term is not None:
                    # orders may be lost while down, or by a previous lease holder that died
                    # between its save and its publish: send them again
                    if (connection, term) != self._synced:
                        await self.republish()
                        self._synced = (connection, term)
                    await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats["loop_errors"] += 1
                log.exception("rollout loop error")
            await asyncio.sleep(self.interval)

    # -- the loop's work -------------------------------------------------------------------------

    async def tick(self, now: float | None = None) -> None:
        """One round over every rollout that owns devices."""
        async with self._lock:
            now = time.time() if now is None else now
            records = await asyncio.to_thread(self.store.query, OWNING)
            if not records:
                return
            rows = await asyncio.to_thread(self.devices.rows)
            ownership = plan_ownership(records, rows)
            for record in records:
                try:
                    await self._tick_one(record, rows, ownership, now)
                except StaleRollout:
                    self.stats["stale"] += 1  # another writer moved it: decide again next time
                except Exception:
                    self.stats["tick_errors"] += 1
                    log.exception("rollout %s: tick failed", record.label)

    async def _tick_one(self, record: RolloutRecord, rows: Mapping[str, DeviceRow],
                        ownership: Ownership, now: float) -> None:
        state = record.state
        audit: list[AuditEntry] = []
        for taker, released in ownership.releases.get(record.id, {}).items():
            why = f"taken over by rollout #{taker}"
            state = release_devices(state, released, why)
            audit.append(AuditEntry("rollout.devices_released", devices=released,
                                    detail={"why": why, "taker": taker}))
        joiners = ownership.joiners.get(record.id)
        if joiners:
            admitted = admit_late_joiners(state, joiners)
            if admitted is not state:
                state = admitted
                audit.append(AuditEntry("rollout.late_joiners", devices=joiners, detail={
                    "wave": state.assignment[joiners[0]] + 1}))
        skipped = ownership.skips.get(record.id)
        if skipped:
            after = skip_devices(state, skipped)
            if after is not state:
                state = after
                audit.append(AuditEntry(
                    "rollout.devices_skipped", devices=sorted(skipped), detail={
                        "why": skipped_text(state.device_class, skipped),
                        "device_class": state.device_class, "skipped": dict(skipped)}))
        observations = await self.observer.observe(record, state, rows)
        decision = decide(record.spec, state, observations, now)
        new_state = apply(state, decision, now)
        desired, messages, entries = await self.orders.for_decision(record, state, new_state, decision, rows)
        audit += entries
        if new_state == record.state and not audit:
            return
        await asyncio.to_thread(self.store.save, record, new_state, audit, desired, now)
        self.orders.send(messages)
        if not isinstance(decision, Wait):
            log.info("rollout %s: %s", record.label, new_state.reasons[-1]
                     if new_state.reasons else decision.kind)

    async def republish(self) -> int:
        """Publish again the recorded desired state of every rollout device not running it.

        Called whenever the broker connection (re)starts: a save that committed just before a
        crash or a disconnect may not have been published. Devices already on their desired
        model are skipped, and an agent ignores a desired state it already follows. Agent
        rollouts record no desired model: their orders are worked out from their state
        (:meth:`_agent_orders_again`).
        """
        async with self._lock:
            rows = await asyncio.to_thread(self.devices.rows)
            todo = [r for r in rows.values() if rollout_of(r.desired_deployment_id) is not None
                    and (r.active != r.desired or r.target not in (None, r.desired))]
            groups: dict[tuple[str, ModelVersion | None], dict[str, ModelVersion | None]] = \
                defaultdict(dict)
            for row in sorted(todo, key=lambda r: r.device_id):
                assert row.desired_deployment_id is not None
                groups[(row.desired_deployment_id, row.desired)][row.device_id] = row.active
            messages: list[Outgoing] = list(await self._agent_orders_again(rows))
            records: dict[int, RolloutRecord | None] = {}
            for (deployment, wanted), running in groups.items():
                manifest = None
                if wanted is not None:
                    try:
                        manifest = await self.orders.manifest(wanted)
                    except NotFoundError:
                        continue
                record = await self._record_of(deployment, records)
                if deployment.endswith("-revert"):  # as _reverts sent it: with an order
                    model = record.spec.model if record else (wanted.model if wanted else None)
                    messages += await self.orders.desired(deployment, manifest, running, rows,
                                                    revert_of=model)
                else:
                    messages += await self.orders.desired(
                        deployment, manifest, running, rows,
                        probation=record.spec.probation if record else None)
            if messages:
                await asyncio.to_thread(self.audit.append, [AuditEntry(
                    "controller.republished", devices=[d for d, _ in messages],
                    detail={"why": "broker connection (re)started"})])
                log.info("published the desired state of %d rollout devices again", len(messages))
            self.orders.send(messages)
            return len(messages)

    async def _agent_orders_again(self, rows: Mapping[str, DeviceRow]) -> list[Outgoing]:
        """The ``desired_agent`` of every device an agent rollout moved that has not got there:
        the rollout's version (neither running it nor failed on it), or while it aborts, the
        version it ran before. Signed afresh, so an order that expired unread is renewed."""
        agents = self.orders.agents
        if agents is None:
            return []
        out: list[Outgoing] = []
        for record in await asyncio.to_thread(self.store.query, OWNING):
            state = record.state
            if record.spec.kind != "agent" or not state.previous:
                continue
            target = AgentVersion(record.spec.agent_version)
            seen = observe_agents(rows, list(state.previous), target)
            if state.status is Status.ABORTING:
                back = {d: p for d, p in state.previous.items()
                        if (o := seen.get(d)) is None or o.active != p}
                out += (await agents.reverts(record, back))[0]
            else:
                todo = [d for d in sorted(state.previous) if (o := seen.get(d)) is None
                        or not (o.runs(target) or o.failed_on(target))]
                out += await agents.wave(record, todo) if todo else []
        return out

    async def _record_of(self, deployment: str, cache: dict[int, RolloutRecord | None]
                         ) -> RolloutRecord | None:
        rollout_id = rollout_of(deployment)
        if rollout_id is None:
            return None
        if rollout_id not in cache:
            try:
                cache[rollout_id] = await asyncio.to_thread(self.store.get, rollout_id)
            except (NotFoundError, ValidationError):
                cache[rollout_id] = None
        return cache[rollout_id]

    # -- operator actions ------------------------------------------------------------------------

    async def create(self, body: Mapping[str, Any], actor: str,
                     dry_run: bool = False) -> dict[str, Any]:
        """Validate and start a rollout (or, with ``dry_run``, only show its plan).

        Refused before anything is stored or sent: a malformed spec or one that cannot work on
        the matched devices (``SpecError``, 422), an unknown model version (404), an overlap
        with a live rollout of equal or higher priority (``ConflictError``, 409).
        """
        spec = spec_from_dict(body)
        version_class: str | None = None  # an agent version is for any class
        if spec.kind == "agent":
            agents = self.orders.agent_orders()
            agents.check_can_sign()
            await agents.manifest(spec.agent_version)  # registered, or 404 before anything
        else:
            version_class = (await self.orders.manifest(
                ModelVersion(spec.model, spec.version))).device_class
        async with self._lock:
            now = time.time()
            rows = await asyncio.to_thread(self.devices.rows)
            selector = parse_selector(spec.selector)
            split = split_by_class((d for d, r in rows.items() if selector.matches(r.labels)),
                                   {d: r.device_class for d, r in rows.items()}, version_class)
            refusal = split.refusal(f"{spec.model}:{spec.version}")
            if refusal is not None:
                raise SpecError(refusal)
            targets = list(split.targets)
            validate(spec, len(targets))
            records = await asyncio.to_thread(self.store.query, OWNING)
            # a device has one model owner and one agent owner: only rollouts of a kind conflict
            named = {f"{r.spec.display_name} (#{r.id})": r for r in records
                     if r.status in LIVE and r.spec.kind == spec.kind}
            preemption = check_conflict(spec, targets, [
                (replace(r.spec, name=name), r.state.assignment.keys())
                for name, r in named.items()])
            state = initial_state(spec, targets, device_class=version_class,
                                  skipped=split.skipped)
            releases = []
            why = f"preempted by rollout {spec.display_name!r} (priority {spec.priority})"
            for name, devices in preemption.moves.items():
                loser = named[name]
                releases.append((loser, release_devices(loser.state, devices, why), [AuditEntry(
                    "rollout.preempted", actor=actor, devices=devices, detail={"why": why})]))
            preempted = {named[n].id: len(d) for n, d in preemption.moves.items()}
            if dry_run:
                draft = RolloutRecord(0, spec.display_name, spec, state, 0, now, now, actor)
                observations = _observe(rows, targets, spec)
                view = rollout_view(draft, observations, now,
                                    decide(spec, state, observations, now), device_lists=True)
                return {**view, "dry_run": True, "preempts": preempted}
            audit = [AuditEntry("rollout.created", actor=actor, detail={
                "spec": spec_to_dict(spec), "targets": len(targets),
                "device_class": version_class, "skipped": dict(split.skipped),
                "wave_sizes": [len(state.sent_in(w)) + len(state.unsent_in(w))
                               for w in range(state.wave_count)],
                "preempted": preempted})]
            record = await asyncio.to_thread(self.store.create, spec, state, actor, audit,
                                             releases, now)
        log.info("rollout %s created by %s: %d devices in %d waves%s", record.label, actor,
                 len(targets), state.wave_count,
                 f"; {skipped_text(version_class, split.skipped)}" if split.skipped else "")
        return await self.view(str(record.id))

    async def pause(self, ref: str, actor: str, reason: str = "") -> dict[str, Any]:
        decision = operator_pause(reason or f"paused by {actor}")
        return await self._operator(ref, actor, "rollout.paused", reason,
                                    lambda s, now: (apply(s, decision, now), decision))

    async def resume(self, ref: str, actor: str, reason: str = "") -> dict[str, Any]:
        why = f"resumed by {actor}" + (f": {reason}" if reason else "")
        return await self._operator(ref, actor, "rollout.resumed", reason,
                                    lambda s, now: (resume(s, now, why), None))

    async def abort(self, ref: str, actor: str, reason: str = "") -> dict[str, Any]:
        def act(state: RolloutState, now: float) -> tuple[RolloutState, Decision | None]:
            decision = operator_abort(state, reason or f"aborted by {actor}")
            return apply(state, decision, now), decision

        return await self._operator(ref, actor, "rollout.aborted", reason, act)

    async def _operator(self, ref: str, actor: str, action: str, reason: str,
                        change: Callable[[RolloutState, float],
                                         tuple[RolloutState, Decision | None]]
                        ) -> dict[str, Any]:
        async with self._lock:
            now = time.time()
            record = await asyncio.to_thread(self.store.find, ref)
            try:
                new_state, decision = change(record.state, now)
            except TransitionError as exc:
                raise ConflictError(f"rollout {record.label}: {exc}"
                                    + _hint(record.status, action, record.spec.kind)) from None
            desired: list[DesiredChange] = []
            messages: list[Outgoing] = []
            detail: dict[str, Any] = {"reason": reason}
            if isinstance(decision, Abort):
                rows = await asyncio.to_thread(self.devices.rows)
                desired, messages, missing = await self.orders.reverts(record, decision.revert, rows)
                detail.update(decision_to_dict(decision))
                if missing:
                    detail["cannot_revert"] = missing
            devices = list(decision.revert) if isinstance(decision, Abort) else []
            await asyncio.to_thread(self.store.save, record, new_state, [AuditEntry(
                action, actor=actor, devices=devices, detail=detail)], desired, now)
            self.orders.send(messages)
        log.info("rollout %s: %s by %s", record.label, action.removeprefix("rollout."), actor)
        return await self.view(str(record.id))

    async def claim_for_deployment(self, device_ids: Sequence[str], model: str, version: int,
                                   deployment_id: str, actor: str = "operator") -> None:
        """Let an all-at-once deployment (``POST /deployments``) take devices: refused if a
        live rollout holds any of them; completed rollouts let them go. Records the desired
        model and audits it, in step with the rollouts."""
        async with self._lock:
            now = time.time()
            wanted = set(device_ids)
            records = [r for r in await asyncio.to_thread(self.store.query, OWNING)
                       if r.spec.kind == "model"]  # agent rollouts order no model
            blocking = [(r, sorted(wanted & set(r.state.assignment))) for r in records
                        if r.status in LIVE]
            blocking = [(r, devices) for r, devices in blocking if devices]
            if blocking:
                parts = [f"rollout {r.label} ({r.status.value}) on {len(d)} devices: {_list(d)}"
                         for r, d in blocking]
                raise ConflictError(
                    "these devices belong to " + "; ".join(parts) + "; let it finish, abort it "
                    "(`edgewise rollout abort ID`), or start a rollout with a higher --priority")
            why = f"taken over by deployment {deployment_id}"
            for record in records:
                shared = sorted(wanted & set(record.state.assignment))
                if shared:
                    await asyncio.to_thread(
                        self.store.save, record, release_devices(record.state, shared, why),
                        [AuditEntry("rollout.devices_released", actor=actor, devices=shared,
                                    detail={"why": why})], (), now)
            await asyncio.to_thread(self.store.save_desired, DesiredChange(
                sorted(wanted), ModelVersion(model, version), deployment_id), [AuditEntry(
                    "deployment.created", actor=actor, devices=sorted(wanted), detail={
                        "deployment_id": deployment_id, "version": f"{model}:{version}"})], now)

    # -- views -----------------------------------------------------------------------------------

    async def view(self, ref: str) -> dict[str, Any]:
        record = await asyncio.to_thread(self.store.find, ref)
        rows = await asyncio.to_thread(self.devices.rows)
        now = time.time()
        observations = await self.observer.observe(record, record.state, rows, for_view=True)
        try:
            decision: Decision | None = decide(record.spec, record.state, observations, now)
        except Exception:  # a preview only
            decision = None
        return rollout_view(record, observations, now, decision)

    async def list_views(self, limit: int = 20, include_finished: bool = True
                         ) -> list[dict[str, Any]]:
        statuses = None if include_finished else LIVE
        records = await asyncio.to_thread(self.store.query, statuses, limit)
        rows = await asyncio.to_thread(self.devices.rows)
        now = time.time()
        out = []
        for record in reversed(records):  # newest first
            view = rollout_view(record, _observe(rows, list(record.state.assignment),
                                                 record.spec), now)
            for wave in view["waves"]:
                wave.pop("failed_devices", None)
            out.append(view)
        return out


def _observe(rows: Mapping[str, DeviceRow], devices: Sequence[str],
             spec: RolloutSpec) -> dict[str, DeviceObservation]:
    """Devices' reported state as the engine reads it, without figures."""
    if spec.kind == "agent":
        return observe_agents(rows, devices, AgentVersion(spec.agent_version))
    return observe(rows, devices, ModelVersion(spec.model, spec.version))


def _hint(status: Status, action: str, kind: str = "model") -> str:
    if action == "rollout.aborted" and status is Status.COMPLETED and kind == "agent":
        return ("; a completed rollout is not reverted: roll the previous agent version out "
                "with `edgewise agent rollout VERSION`")
    if action == "rollout.aborted" and status is Status.COMPLETED:
        return ("; a completed rollout is not reverted: roll the previous version out "
                "with `edgewise rollout start MODEL:VERSION`")
    if action == "rollout.resumed":
        return "; only a paused rollout can be resumed"
    return ""


def _list(devices: Sequence[str]) -> str:
    more = len(devices) - _SHOWN
    return ", ".join(devices[:_SHOWN]) + (f" and {more} more" if more > 0 else "")
