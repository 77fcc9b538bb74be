"""Carries out model updates by the pure state machine in :mod:`edge_agent.update`.

One :class:`Updater` per agent. A desired state goes through the :class:`DesiredGate` (signature,
expiry, device class, version, format, size); :func:`edge_agent.update.plan.plan` then decides
what it means where the update stands (a new target, an abort, a rollback, an unload, nothing)
and the updater carries that command out. A *drive* task then does each state's work in turn:
before the work of a state starts, its :class:`UpdateStep` and the desired state are written to
the journal (``update.json``), so a crash at any instant resumes from a known step by
:data:`edge_agent.update.RESUME_MAP` (docs/agent-lifecycle.md). Every state's work is safe to
repeat.

    downloading   chunks into download/{sha}.part, each checked against the signed chunk hashes
                  (:mod:`edge_agent.artifact_fetch`; each state's work: :mod:`edge_agent.state_work`)
    verifying     length and sha256 of the whole file; moved into models/ (the standby slot)
    staged        the verified file waits beside the running one
    activating    load it in its runtime, run the manifest's smoke tests, switch the pointer
                  (atomic rename), serve it (:mod:`edge_agent.slot_keeper`)
    probation     the new model serves under a health window; failure rolls back
    rolling_back  point back at the previous slot and serve it (no download: it is on disk)

The updater sees the agent only through :class:`~edge_agent.update.ports.UpdateHost` (what
serves, the report), the MQTT link through :class:`~edge_agent.update.ports.ChunkLink` and the
configuration through :class:`~edge_agent.update.ports.UpdateSettings`.

Predictions never wait for an update and never fail because of the switch: the runtime is
swapped by one reference assignment, and a call in flight finishes on the runtime it started
with. (A new model that fails on real inputs does fail those calls until probation rolls it
back: the early verdict needs a few failed rows, see :mod:`edge_agent.update.probation`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from edge_agent.artifact_fetch import ArtifactFetch
from edge_agent.desired_gate import DesiredGate, ForeignKeyUpdate, Rejected, load_trusted_keys
from edge_agent.download import ArtifactDownload
from edge_agent.parking import Parking
from edge_agent.slot_keeper import SlotKeeper, ref_of
from edge_agent.slots import SlotStore
from edge_agent.small_io import run_small_io
from edge_agent.state_work import StateWork
from edge_agent.state_work import ref_of_manifest as _ref
from edge_agent.trust_state import TrustStore
from edge_agent.update import REST_STATES, Event, UpdateState, UpdateStep, advance, idle, resume
from edge_agent.update.pause import UpdatePause
from edge_agent.update.plan import (
    Command,
    Confirm,
    Defer,
    DesiredRef,
    Ignore,
    Install,
    Offer,
    Refused,
    Reject,
    Replace,
    RollBack,
    Situation,
    Unload,
    Withdraw,
    plan,
    recheck_on_resume,
    settles,
)
from edge_agent.update.ports import ChunkLink, UpdateHost, UpdateReport, UpdateSettings
from edge_agent.update.probation import ProbationWatch
from edge_agent.update_journal import UpdateJournal
from edgewise_wire import Desired, Manifest, ModelRef, ProbationPolicy
from edgewise_wire.key_update import KeyUpdateMessage
from edgewise_wire.seal import Seal
from edgewise_wire.topics import ChunkTopic, DeviceChannel, device_topic

log = logging.getLogger("edgewise.agent.update")

WITHDRAWN_IN_PROBATION = "the controller withdrew this version during probation"


def _desired_ref(desired: Desired | None) -> DesiredRef | None:
    if desired is None:
        return None
    manifest = desired.manifest
    return DesiredRef(desired.deployment_id, _ref(manifest) if manifest is not None else None)


class Updater:
    """``small_io``: the pool for journal writes, pointer switches and file checks
    (:mod:`edge_agent.small_io`), owned by whoever runs the agent. ``clock``: the device's wall
    clock (expiry checks, journal times). ``pause``: the test hook, None on a device.

    Raises TrustedKeyError for an unreadable trusted key, TrustStateError for a damaged
    ``trust.json``."""

    def __init__(self, host: UpdateHost, link: ChunkLink, settings: UpdateSettings, *,
                 small_io: Executor, clock: Callable[[], float] = time.time,
                 pause: UpdatePause | None = None) -> None:
        self.host = host
        self.device_id = settings.device_id
        self.clock = clock
        self.small_io = small_io
        self.journal = UpdateJournal(settings.data_dir / "update.json")
        self.gate = DesiredGate(load_trusted_keys(settings.trusted_keys),
                                device_id=settings.device_id, device_class=settings.device_class,
                                max_model_bytes=settings.max_model_bytes,
                                trust=TrustStore(settings.data_dir))
        self.slots = SlotKeeper(SlotStore(settings.data_dir), host, small_io, settings.device_id)
        self.parking = Parking(pause, settings.data_dir / "paused-in", settings.device_id)
        self.fetch = ArtifactFetch(
            link, device_topic(settings.device_id, DeviceChannel.ARTIFACT_REQUEST,
                               root=settings.topic_root),
            settings.data_dir / "download", device_id=settings.device_id, report=host.report,
            parking=self.parking, repair_interval_s=settings.chunk_repair_interval_s,
            use_url=settings.artifact_http, root=settings.topic_root)
        self.work = StateWork(self.slots, self.fetch, host,
                              default_probation=ProbationPolicy(settings.probation_s),
                              device_id=settings.device_id)
        self.step: UpdateStep = idle(now=clock())
        self.desired: Desired | None = None  # the desired state the step carries out
        self.pending: Desired | None = None  # arrived while the update could not take it
        self.last_error: str | None = None
        self.rejected = 0
        self._drive_task: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[Desired | KeyUpdateMessage] = asyncio.Queue()
        self._fresh_seal: Seal | None = None  # set by _offer: record it before acting
        self._refused: Desired | None = None  # the last desired state refused, offered again
        # after a key update (it may have been signed by a key that update brings)
        self._tasks: list[asyncio.Task[None]] = []
        self._saves = 0

    # -- start and stop ------------------------------------------------------------------------

    def start(self) -> None:
        """Serve what the pointer names, then resume an update the journal shows in flight."""
        if not self.gate.enforcing:
            log.warning("%s: no trusted_keys configured: manifests are NOT verified "
                        "(development mode; enrolled devices get the controller's keys)",
                        self.device_id)
        error = self.slots.serve_at_start()
        if error is not None:
            self.last_error = error
        saved = self.journal.load()
        if saved is None:
            self.step = idle(now=self.clock(), running=self.host.active)
        else:
            step, desired = saved
            resumed, action, reason = resume(step, now=self.clock())
            self.step, self.desired, self.last_error = resumed, desired, resumed.last_error
            resumed = self._recheck_before_resuming(resumed)
            self.journal.save(resumed, desired)
            log.info("%s: %s; resume action: %s", self.device_id, reason, action.value)
        self._tasks = [asyncio.create_task(self._control()),
                       asyncio.create_task(self.fetch.repair_loop())]
        if self.step.state not in REST_STATES:
            self._start_drive()

    def _recheck_before_resuming(self, step: UpdateStep) -> UpdateStep:
        desired = self.desired
        if not recheck_on_resume(step.state) or desired is None:
            return step
        try:
            self.gate.check(desired, self.host.active, now=self.clock())
        except Rejected as exc:
            step = advance(step, Event.FAILURE, now=self.clock(),
                           error=f"not resumed after the restart: {exc}")
            self.step, self.last_error = step, step.last_error
            log.error("%s: %s", self.device_id, self.last_error)
        return step

    def close(self) -> None:
        for task in (self._drive_task, *self._tasks):
            if task is not None:
                task.cancel()
        self.fetch.close()

    # -- what comes in ---------------------------------------------------------------------------

    def on_desired(self, desired: Desired) -> None:
        """From the MQTT callback: handled in order by the control task."""
        self._inbox.put_nowait(desired)

    def on_key_update(self, message: KeyUpdateMessage) -> None:
        """From the MQTT callback: in order with the desired states (a desired state signed by a
        new key comes after the key update that brings it)."""
        self._inbox.put_nowait(message)

    def on_chunk(self, chunk: ChunkTopic, payload: bytes) -> None:
        self.fetch.on_chunk(chunk, payload)

    def on_connected(self) -> None:
        """The link is (back) up: ask for the chunks a download in flight still misses."""
        self.fetch.on_connected()

    def probation_for(self, sha256: str) -> ProbationWatch | None:
        """The probation window of the model with this sha256, if it is on probation."""
        work = self.work
        return work.probation if work.probation_sha == sha256 else None

    async def _control(self) -> None:
        while True:
            desired = await self._inbox.get()
            try:
                if isinstance(desired, KeyUpdateMessage):
                    await self._apply_key_update(desired)
                else:
                    await self._apply(desired)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: %s not applied", self.device_id,
                              "key update" if isinstance(desired, KeyUpdateMessage)
                              else f"desired state {desired.deployment_id}")

    # -- desired states: plan, then carry out ----------------------------------------------------

    async def _apply_key_update(self, message: KeyUpdateMessage) -> None:
        try:
            update = self.gate.check_key_update(message)
        except ForeignKeyUpdate as exc:
            # counted by the gate; another fleet's retained update must not overwrite this
            # device's last error or its count of refused desired states
            log.warning("%s: %s", self.device_id, exc)
            return
        except Rejected as exc:
            self.rejected += 1
            self.last_error = str(exc)
            log.error("%s: %s", self.device_id, exc)
            self.host.report()
            return
        if update is None:
            return  # the retained copy of the update applied last
        await run_small_io(self.small_io, self.gate.apply_key_update, update)
        refused, self._refused = self._refused, None
        if refused is not None:
            self.on_desired(refused)  # perhaps signed by a key this update brought

    async def _apply(self, desired: Desired) -> None:
        situation = Situation(self.step, self.host.active, ref_of(self.slots.pointer.previous),
                              _desired_ref(self.desired))
        offer = self._offer(desired)
        seal, self._fresh_seal = self._fresh_seal, None
        if seal is not None:
            # durable before anything is done: after a crash the counter is still used up
            await run_small_io(self.small_io, self.gate.record, seal)
        self._refused = desired if isinstance(offer, Refused) else None
        await self._carry_out(plan(situation, offer), desired)

    def _offer(self, desired: Desired) -> Offer:
        try:
            accepted = self.gate.check(desired, self.host.active, now=self.clock())
        except Rejected as exc:
            return Refused(desired.deployment_id, str(exc))
        if accepted.fresh:
            self._fresh_seal = accepted.seal
        manifest = accepted.manifest
        return DesiredRef(desired.deployment_id, _ref(manifest) if manifest is not None else None)

    async def _carry_out(self, command: Command, desired: Desired) -> None:
        match command:
            case Ignore(why=why):
                log.debug("%s: desired state %s: %s", self.device_id, desired.deployment_id, why)
            case Reject(reason=reason, at_rest=at_rest):
                self.rejected += 1
                log.error("%s: %s (still running %s)", self.device_id, reason, self.host.active)
                if at_rest:
                    self.desired = desired
                    await self._advance(Event.REJECTED, error=reason)
                self.last_error = reason
                self.host.report()
            case Install():
                await self._begin(desired)
            case Replace():
                await self._stop_drive()
                self.fetch.discard()
                await self._begin(desired)
            case Withdraw(then=then):
                await self._stop_drive()
                self.fetch.discard()
                await self._advance(Event.ABORTED, error=None)
                self.last_error = None
                await self._carry_out(then, desired)
            case Unload():
                running = self.host.active
                self.desired = desired
                await self._advance(Event.DEACTIVATE)
                await self.slots.unload(desired.deployment_id)
                self.last_error = None
                log.info("%s: desired state names no model; %s unloaded", self.device_id,
                         running)
                self.host.report()
            case Confirm(settle=settle):
                self.desired = desired  # the controller confirms what serves (a revert, say)
                if settle:
                    await self._settle()
                    self.host.report()
            case RollBack(to=to):
                self.desired = desired
                log.info("%s: rolling back to %s as the controller ordered", self.device_id, to)
                await self._advance(Event.ROLLBACK_ORDER)
                self._start_drive()
            case Defer(abort_probation=abort_probation):
                # the latest desired state is applied once the device is at rest again
                self.pending = desired
                if abort_probation:
                    self.work.abort_probation = WITHDRAWN_IN_PROBATION
                self.host.report()

    async def _settle(self) -> None:
        """Back to rest without an error (see :func:`~edge_agent.update.plan.settles`)."""
        await self._advance(Event.ABORTED)
        self.last_error = None

    async def _begin(self, desired: Desired) -> None:
        manifest = desired.manifest
        assert manifest is not None
        self.desired = desired
        self.last_error = None
        self.work.verified_sha = None
        await self._advance(Event.NEW_TARGET, target=_ref(manifest))
        log.info("%s: updating to %s:%s (%d bytes)", self.device_id, manifest.model,
                 manifest.version, manifest.artifact.size)
        self._start_drive()

    # -- the drive: one state's work after another -----------------------------------------------

    def _start_drive(self) -> None:
        self._drive_task = asyncio.create_task(self._drive())

    async def _stop_drive(self) -> None:
        task, self._drive_task = self._drive_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _drive(self) -> None:
        while self.step.state not in REST_STATES:
            state = self.step.state
            self.host.report()
            if self.parking.at_step(state):
                await asyncio.Event().wait()  # parked by the test hook until the test kills us
            try:
                event, error = await self.work.run(self.step, self.desired)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("%s: unexpected error in %s", self.device_id, state.value)
                event, error = Event.FAILURE, f"unexpected error in {state.value}: {exc}"
            await self._advance(event, error=error)
        await self._at_rest()

    async def _advance(self, event: Event, *, target: ModelRef | None = None,
                       error: str | None = None) -> None:
        step = advance(self.step, event, now=self.clock(), target=target, error=error)
        # persisted before the new state's work starts (in a thread: an fsync would stall every
        # agent sharing the loop in the simulator); numbered, so that a save left running by a
        # cancelled drive cannot land after a newer one
        self._saves += 1
        await run_small_io(self.small_io, self.journal.save, step, self.desired, self._saves)
        self.step = step
        if error is not None:
            self.last_error = step.last_error
        log.debug("%s: %s -> %s", self.device_id, event.name, step.state.value)

    async def _at_rest(self) -> None:
        state = self.step.state
        await self.slots.prune()
        if state is UpdateState.ACTIVE:
            self.last_error = None
            log.info("%s: committed %s", self.device_id, self.host.active)
        elif state is UpdateState.ROLLED_BACK:
            log.warning("%s: rolled back to %s: %s", self.device_id, self.host.active,
                        self.last_error or "as the controller ordered")
            carried = _desired_ref(self.desired)
            if settles(state, carried.target if carried else None, self.host.active):
                await self._settle()  # an ordered rollback is no failure
        elif state is UpdateState.FAILED:
            log.error("%s: update failed: %s (still running %s)", self.device_id,
                      self.last_error, self.host.active)
        self.fetch.clean_partials(keep=None)
        self.host.report()
        pending, self.pending = self.pending, None
        if pending is not None:
            self.on_desired(pending)

    # -- what the agent reports --------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Parked by the test hook (:mod:`edge_agent.parking`)."""
        return self.parking.parked

    @property
    def download(self) -> ArtifactDownload | None:
        return self.fetch.download

    @property
    def reported_state(self) -> str:
        state = self.step.state
        if state is UpdateState.IDLE and self.host.active is not None:
            return "active"  # at rest, serving (an aborted update, an unchanged model)
        return state.value

    @property
    def in_flight(self) -> bool:
        return self.step.state not in REST_STATES

    @property
    def target_manifest(self) -> Manifest | None:
        """The manifest being installed, or the one that failed (None at rest otherwise)."""
        if self.step.state in (UpdateState.IDLE, UpdateState.ACTIVE) or self.desired is None:
            return None
        return self.desired.manifest

    def report_fields(self) -> UpdateReport:
        state = self.step.state
        target = self.target_manifest
        staged = None
        if state in (UpdateState.STAGED, UpdateState.ACTIVATING) and target is not None:
            staged = _ref(target)
        previous = self.slots.pointer.previous
        download = self.fetch.download
        progress = (download.received, download.ref.chunk_count) if download is not None else None
        return UpdateReport(
            state=self.reported_state, target=_ref(target) if target is not None else None,
            staged=staged, previous=previous.ref if previous else None,
            last_error=self.last_error, progress=progress,
            deployment_id=self.desired.deployment_id if self.desired is not None else None)

    def status(self) -> dict[str, Any]:
        fields = self.report_fields()
        return {"update_state": self.step.state.value,
                "staged": str(fields.staged) if fields.staged else None,
                "previous": str(fields.previous) if fields.previous else None,
                "target": str(fields.target) if fields.target else None,
                "rejected_desired": self.rejected,
                "refused": dict(self.gate.refusals),
                "seal_counter": self.gate.state.highest_counter,
                "agent_seal_counter": self.gate.state.agent_counter,
                "key_sequence": self.gate.state.key_sequence,
                "trusted_keys": sorted(self.gate.trusted_keys),
                # downloads from a manifest's artifact URL: bytes, interruptions, fallbacks
                "artifact_url": dict(self.fetch.stats),
                "trust": "enforcing" if self.gate.enforcing else "development (unsigned accepted)"}
