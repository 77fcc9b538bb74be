"""Carries out model updates by the pure state machine in :mod:`edge_agent.update`.

One :class:`Updater` per agent. A desired state goes through the :class:`DesiredGate` (signature,
expiry, device class, version, format, size); an accepted one becomes a NEW_TARGET (or an abort,
a rollback, an unload). A *drive* task then does each state's work in turn: before the work of a
state starts, its :class:`UpdateStep` and the desired state are written to the journal
(``update.json``), so a crash at any instant resumes from a known step by
:data:`edge_agent.update.RESUME_MAP` (docs/agent-lifecycle.md). Every state's work is safe to
repeat.

    downloading   chunks into download/{sha}.part, each checked against the signed chunk hashes
    verifying     length and sha256 of the whole file; moved into models/ (the standby slot)
    staged        the verified file waits beside the running one
    activating    load it in its runtime, run the manifest's smoke tests, switch the pointer
                  (atomic rename), serve it
    probation     the new model serves under a health window; failure rolls back
    rolling_back  point back at the previous slot and serve it (no download: it is on disk)

Predictions never wait for an update and never fail because of the switch: the runtime is
swapped by one reference assignment, and a call in flight finishes on the runtime it started
with. (A new model that fails on real inputs does fail those calls until probation rolls it
back: the early verdict needs a few failed rows, see :mod:`edge_agent.update.probation`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from edge_agent.desired_gate import DesiredGate, Rejected, load_trusted_keys
from edge_agent.download import ArtifactDownload, ArtifactVerificationError
from edge_agent.runtime import InferenceRuntime, load_runtime, smoke_test
from edge_agent.slots import Slot, SlotError, SlotPointer, SlotStore, artifact_name
from edge_agent.update import REST_STATES, Event, UpdateState, UpdateStep, advance, idle, resume
from edge_agent.update.probation import ProbationWatch
from edge_agent.update_journal import UpdateJournal
from edgewise_wire import Desired, Manifest, ModelRef, ProbationPolicy, encode
from edgewise_wire.messages import ArtifactRequest
from edgewise_wire.topics import ChunkTopic, DeviceChannel, chunk_wildcard

if TYPE_CHECKING:
    from edge_agent.agent import EdgeAgent

log = logging.getLogger("edgewise.agent.update")

# Test hook (tests/update_e2e): "STATE" or "downloading:N". Right after the step for STATE is
# persisted (for downloading:N, after N chunks are written) the agent writes
# {data_dir}/paused-in and stops advancing the update, so a test can SIGKILL it there.
PAUSE_ENV = "EDGEWISE_AGENT_PAUSE_IN"
PROBATION_TICK_S = 0.1

# Journal writes, pointer switches and file checks are small but come ~10 times per update, one
# after the other. On the loop's default executor they would queue behind the heavy work of
# other updates (hashing artifacts, building onnxruntime sessions): with a thousand simulated
# agents that multiplied an update's wall time. They get threads of their own.
_SMALL_IO = ThreadPoolExecutor(max_workers=4, thread_name_prefix="edgewise-update-io")

T = TypeVar("T")


async def _small_io(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_SMALL_IO, fn, *args)


@dataclass(frozen=True)
class _Pause:
    state: UpdateState
    after_chunks: int | None = None


def _pause_from_env() -> _Pause | None:
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return None
    name, _, count = spec.partition(":")
    try:
        return _Pause(UpdateState(name), int(count) if count else None)
    except ValueError:
        log.error("%s=%r is not a state name (or downloading:N); ignored", PAUSE_ENV, spec)
        return None


def _ref(manifest: Manifest) -> ModelRef:
    return ModelRef(manifest.model, manifest.version, manifest.artifact.sha256)


class Updater:
    def __init__(self, agent: EdgeAgent) -> None:
        config = agent.config
        self.agent = agent
        self.slots = SlotStore(config.data_dir)
        self.journal = UpdateJournal(config.data_dir / "update.json")
        self.download_dir = config.data_dir / "download"
        self.gate = DesiredGate(load_trusted_keys(config.trusted_keys),
                                device_id=config.device_id, device_class=config.device_class,
                                max_model_bytes=config.max_model_bytes)
        self.default_probation = ProbationPolicy(config.probation_s)
        self.pointer = SlotPointer()
        self.step: UpdateStep = idle(now=time.time())
        self.desired: Desired | None = None  # the desired state the step carries out
        self.pending: Desired | None = None  # arrived while the update could not take it
        self.last_error: str | None = None
        self.download: ArtifactDownload | None = None
        self.probation: ProbationWatch | None = None
        self.probation_sha: str | None = None
        self.rejected = 0
        self._download_done = asyncio.Event()
        self._abort_probation: str | None = None
        self._verified_sha: str | None = None
        self._drive_task: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[Desired] = asyncio.Queue()
        self._control_task: asyncio.Task[None] | None = None
        self._pause = _pause_from_env()
        self._paused = False
        self._last_progress_report = 0.0
        self._saves = 0
        self.last_chunk_at = 0.0

    # -- start and stop ------------------------------------------------------------------------

    def start(self) -> None:
        """Serve what the pointer names, then resume an update the journal shows in flight."""
        if not self.gate.enforcing:
            log.warning("%s: no trusted_keys configured: manifests are NOT verified "
                        "(development mode; enrolled devices get the controller's keys)",
                        self.agent.device_id)
        self._serve_pointer_at_start()
        saved = self.journal.load()
        running = self.agent.active
        if saved is None:
            self.step = idle(now=time.time(), running=running)
        else:
            step, desired = saved
            resumed, action, reason = resume(step, now=time.time())
            self.step, self.desired, self.last_error = resumed, desired, resumed.last_error
            resumed = self._recheck_before_resuming(resumed)
            self.journal.save(resumed, desired)
            log.info("%s: %s; resume action: %s", self.agent.device_id, reason, action.value)
        self._control_task = asyncio.create_task(self._control())
        if self.step.state not in REST_STATES:
            self._start_drive()

    def _recheck_before_resuming(self, step: UpdateStep) -> UpdateStep:
        """An update not activated yet is checked again before it resumes: the device may have
        been off for longer than its manifest is valid (or its trusted keys changed)."""
        desired = self.desired
        if step.state not in (UpdateState.DOWNLOADING, UpdateState.VERIFYING, UpdateState.STAGED) \
                or desired is None:
            return step
        try:
            self.gate.check(desired, self.agent.active, now=time.time())
        except Rejected as exc:
            step = advance(step, Event.FAILURE, now=time.time(),
                           error=f"not resumed after the restart: {exc}")
            self.step, self.last_error = step, step.last_error
            log.error("%s: %s", self.agent.device_id, self.last_error)
        return step

    def close(self) -> None:
        for task in (self._drive_task, self._control_task):
            if task is not None:
                task.cancel()
        if self.download is not None:
            self.download.close()

    def _serve_pointer_at_start(self) -> None:
        try:
            self.pointer = self.slots.load()
        except SlotError as exc:
            self.last_error = f"the model pointer could not be read at start: {exc}"
            log.error("%s: %s", self.agent.device_id, self.last_error)
            return
        active, previous = self.pointer.active, self.pointer.previous
        if active is None:
            return  # no model was desired (an unload): the previous slot stays unloaded
        for slot in (active, previous):
            if slot is None:
                continue
            try:
                runtime = load_runtime(self.slots.verify(slot), slot.manifest)
            except Exception as exc:
                self.last_error = f"the model {slot.ref} could not be loaded at start: {exc}"
                log.error("%s: %s", self.agent.device_id, self.last_error)
                continue
            if slot is not active:
                # the active slot is broken (disk error): the previous one is better than none
                self.pointer = SlotPointer(slot, None)
                self.slots.switch(self.pointer)
                log.warning("%s: serving the previous slot %s instead", self.agent.device_id,
                            slot.ref)
            self.agent.serve(slot, runtime)
            return
        # no slot could be loaded: the device serves nothing, and last_error says why

    # -- desired states ------------------------------------------------------------------------

    def on_desired(self, desired: Desired) -> None:
        """From the MQTT callback: handled in order by the control task."""
        self._inbox.put_nowait(desired)

    async def _control(self) -> None:
        while True:
            desired = await self._inbox.get()
            try:
                await self._apply(desired)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: desired state %s not applied", self.agent.device_id,
                              desired.deployment_id)

    async def _apply(self, desired: Desired) -> None:
        running = self.agent.active
        try:
            accepted = self.gate.check(desired, running, now=time.time())
        except Rejected as exc:
            await self._reject(desired, str(exc))
            return
        manifest, state = accepted.manifest, self.step.state
        target = self.step.target
        if manifest is not None and target is not None and state not in REST_STATES \
                and manifest.artifact.sha256 == target.sha256:
            return  # the retained desired state again (a reconnect): the update goes on
        if state in REST_STATES:
            await self._apply_at_rest(desired, manifest)
        elif state in (UpdateState.DOWNLOADING, UpdateState.VERIFYING, UpdateState.STAGED):
            await self._stop_drive()
            self._discard_download()
            if manifest is not None and (running is None
                                         or manifest.artifact.sha256 != running.sha256):
                await self._begin(desired, manifest)  # a newer target replaces this one
                return
            # back to what serves (a rollout's revert), or to no model
            await self._advance(Event.ABORTED, error=None)
            self.last_error = None
            await self._apply_at_rest(desired, manifest)
        else:
            # activating, probation, rolling back: finish (or abort probation) first; the
            # latest desired state is applied once the device is at rest again
            self.pending = desired
            if state is UpdateState.PROBATION:  # (the same target returned above)
                self._abort_probation = "the controller withdrew this version during probation"
            self.agent.report()

    async def _apply_at_rest(self, desired: Desired, manifest: Manifest | None) -> None:
        running, state = self.agent.active, self.step.state
        if manifest is None:
            if running is None and state is UpdateState.IDLE:
                return  # already so (the retained message again)
            self.desired = desired
            await self._advance(Event.DEACTIVATE)
            self.pointer = SlotPointer(None, self.pointer.active)
            await _small_io(self.slots.switch, self.pointer)
            self.last_error = None
            self.agent.serve(None, None, deployment_id=desired.deployment_id)
            log.info("%s: desired state names no model; %s unloaded", self.agent.device_id,
                     running)
            self.agent.report()
            return
        sha = manifest.artifact.sha256
        if running is not None and running.sha256 == sha:
            self.desired = desired  # the controller confirms what serves (a revert, say)
            if await self._settle_on_what_serves():
                self.agent.report()
            return
        previous = self.pointer.previous
        if state is UpdateState.ACTIVE and previous is not None and previous.ref.sha256 == sha:
            self.desired = desired
            log.info("%s: rolling back to %s as the controller ordered", self.agent.device_id,
                     previous.ref)
            await self._advance(Event.ROLLBACK_ORDER)
            self._start_drive()
            return
        if state in (UpdateState.FAILED, UpdateState.ROLLED_BACK) and self.desired is not None \
                and self.desired.deployment_id == desired.deployment_id \
                and self.desired.manifest is not None \
                and self.desired.manifest.artifact.sha256 == sha:
            return  # the same failed deployment again (a reconnect): not retried in a loop
        await self._begin(desired, manifest)

    async def _settle_on_what_serves(self) -> bool:
        """After a failure or a rollback, a desired state naming the model that serves (a
        rollout's revert, an ordered rollback) means nothing is wrong: back to rest without an
        error. True if the state changed."""
        manifest = self.desired.manifest if self.desired is not None else None
        active = self.agent.active
        if self.step.state not in (UpdateState.FAILED, UpdateState.ROLLED_BACK) or manifest is None \
                or active is None or manifest.artifact.sha256 != active.sha256:
            return False
        await self._advance(Event.ABORTED)
        self.last_error = None
        return True

    async def _begin(self, desired: Desired, manifest: Manifest) -> None:
        self.desired = desired
        self.last_error = None
        self._verified_sha = None
        await self._advance(Event.NEW_TARGET, target=_ref(manifest))
        log.info("%s: updating to %s:%s (%d bytes)", self.agent.device_id, manifest.model,
                 manifest.version, manifest.artifact.size)
        self._start_drive()

    async def _reject(self, desired: Desired, reason: str) -> None:
        self.rejected += 1
        log.error("%s: %s (still running %s)", self.agent.device_id, reason, self.agent.active)
        if self.step.state in REST_STATES:
            self.desired = desired
            await self._advance(Event.REJECTED, error=reason)
        self.last_error = reason
        self.agent.report()

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
        work = {
            UpdateState.DOWNLOADING: self._download_work,
            UpdateState.VERIFYING: self._verify_work,
            UpdateState.STAGED: self._staged_work,
            UpdateState.ACTIVATING: self._activate_work,
            UpdateState.PROBATION: self._probation_work,
            UpdateState.ROLLING_BACK: self._rollback_work,
        }
        while self.step.state not in REST_STATES:
            state = self.step.state
            self.agent.report()
            await self._maybe_pause(state)
            try:
                event, error = await work[state]()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("%s: unexpected error in %s", self.agent.device_id, state.value)
                event, error = Event.FAILURE, f"unexpected error in {state.value}: {exc}"
            await self._advance(event, error=error)
        await self._at_rest()

    async def _advance(self, event: Event, *, target: ModelRef | None = None,
                       error: str | None = None) -> None:
        step = advance(self.step, event, now=time.time(), target=target, error=error)
        # persisted before the new state's work starts (in a thread: an fsync would stall every
        # agent sharing the loop in the simulator); numbered, so that a save left running by a
        # cancelled drive cannot land after a newer one
        self._saves += 1
        await _small_io(self.journal.save, step, self.desired, self._saves)
        self.step = step
        if error is not None:
            self.last_error = step.last_error
        log.debug("%s: %s -> %s", self.agent.device_id, event.name, step.state.value)

    async def _at_rest(self) -> None:
        state = self.step.state
        # at rest only the two slots' files stay (a failed target's verified file goes)
        keep = {s.file for s in (self.pointer.active, self.pointer.previous) if s}
        await _small_io(self.slots.prune, keep)
        if state is UpdateState.ACTIVE:
            self.last_error = None
            log.info("%s: committed %s", self.agent.device_id, self.agent.active)
        elif state is UpdateState.ROLLED_BACK:
            log.warning("%s: rolled back to %s: %s", self.agent.device_id, self.agent.active,
                        self.last_error or "as the controller ordered")
            await self._settle_on_what_serves()  # an ordered rollback is no failure
        elif state is UpdateState.FAILED:
            log.error("%s: update failed: %s (still running %s)", self.agent.device_id,
                      self.last_error, self.agent.active)
        self._clean_partials(keep=None)
        self.agent.report()
        pending, self.pending = self.pending, None
        if pending is not None:
            self.on_desired(pending)

    async def _maybe_pause(self, state: UpdateState) -> None:
        pause = self._pause
        if pause is None or pause.state is not state or pause.after_chunks is not None:
            return
        self._enter_pause(state.value)
        await asyncio.Event().wait()  # until the test kills the process

    def _enter_pause(self, state: str, detail: str = "") -> None:
        self._paused = True
        (self.agent.config.data_dir / "paused-in").write_text(state)
        log.warning("%s: test hook: paused in %s%s", self.agent.device_id, state, detail)

    @property
    def paused(self) -> bool:
        return self._paused

    # -- the work of each state ------------------------------------------------------------------

    def _target_manifest(self) -> Manifest:
        assert self.desired is not None and self.desired.manifest is not None
        return self.desired.manifest

    async def _download_work(self) -> tuple[Event, str | None]:
        manifest = self._target_manifest()
        sha = manifest.artifact.sha256
        if await _small_io(self.slots.has_verified, manifest):
            return Event.SUCCESS, None  # on disk already (a model rolled back from, say)
        self._clean_partials(keep=sha)
        self._download_done = asyncio.Event()
        self.download = ArtifactDownload(manifest.artifact, self.download_dir / f"{sha}.part")
        self.last_chunk_at = time.monotonic()
        if not self.download.complete:
            self.request_missing()
            await self._download_done.wait()
        return Event.SUCCESS, None

    async def _verify_work(self) -> tuple[Event, str | None]:
        manifest = self._target_manifest()
        if await _small_io(self.slots.has_verified, manifest):
            self._discard_download()
            self._verified_sha = manifest.artifact.sha256
            return Event.SUCCESS, None
        download = self.download
        if download is None:  # a restart: the partial file is checked again, chunk by chunk
            download = ArtifactDownload(
                manifest.artifact, self.download_dir / f"{manifest.artifact.sha256}.part")
        if not download.complete:
            self.download = download
            return Event.RETRY, "the artifact was incomplete after a restart"
        try:
            await asyncio.to_thread(download.finalize, self.slots.staged_path(manifest))
        except ArtifactVerificationError as exc:
            self.download = None
            return Event.FAILURE, f"the downloaded artifact is not the one signed for: {exc}"
        self.download = None
        self._verified_sha = manifest.artifact.sha256
        return Event.SUCCESS, None

    async def _staged_work(self) -> tuple[Event, str | None]:
        manifest = self._target_manifest()
        if self._verified_sha != manifest.artifact.sha256 and \
                not await _small_io(self.slots.has_verified, manifest):
            return Event.RETRY, "the staged artifact was damaged on disk; downloading it again"
        return Event.SUCCESS, None

    async def _activate_work(self) -> tuple[Event, str | None]:
        manifest = self._target_manifest()
        assert self.desired is not None
        target = _ref(manifest)
        current = self.pointer.active
        if current is not None and current.ref == target:
            # a crash after the switch: the previous slot is authoritative until activation
            # completes, so serve it and activate again
            await self._point_at(self.pointer.previous, previous=None)
        path = self.slots.staged_path(manifest)
        try:
            runtime = await asyncio.to_thread(load_runtime, path, manifest)
            await asyncio.to_thread(smoke_test, runtime)
        except Exception as exc:
            return Event.FAILURE, f"activation of {target} failed: {exc}"
        new = Slot(manifest, artifact_name(manifest), self.desired.deployment_id)
        self.pointer = SlotPointer(new, self.pointer.active)
        await _small_io(self.slots.switch, self.pointer)
        self.agent.serve(new, runtime)  # the switch: one reference assignment
        return Event.SUCCESS, None

    async def _probation_work(self) -> tuple[Event, str | None]:
        manifest = self._target_manifest()
        assert self.desired is not None
        active = self.pointer.active
        if active is None or active.manifest.artifact.sha256 != manifest.artifact.sha256 \
                or self.agent.active is None:
            return Event.FAILURE, "the new model is not in the active slot after a restart"
        policy = self.desired.probation or manifest.probation or self.default_probation
        watch = ProbationWatch(policy, time.monotonic())
        self.probation, self.probation_sha = watch, manifest.artifact.sha256
        try:
            while True:
                if self._abort_probation is not None:
                    reason, self._abort_probation = self._abort_probation, None
                    return Event.ABORTED, reason
                verdict = watch.verdict(time.monotonic())
                if verdict is not None:
                    log.info("%s: %s", self.agent.device_id, verdict.reason)
                    if verdict.passed:
                        return Event.SUCCESS, None
                    return Event.FAILURE, verdict.reason
                await asyncio.sleep(min(PROBATION_TICK_S, watch.remaining_s(time.monotonic()))
                                    or PROBATION_TICK_S)
        finally:
            self.probation, self.probation_sha = None, None

    async def _rollback_work(self) -> tuple[Event, str | None]:
        destination = self.step.previous
        if destination is None:
            await self._point_at(None, previous=None)
            return Event.SUCCESS, None
        for slot in (self.pointer.active, self.pointer.previous):
            if slot is not None and slot.ref == destination:
                # the pointer never switched (activation failed before it): the older previous
                # slot stays; after a switch, the slot rolled back from is not kept
                keep = self.pointer.previous if slot is self.pointer.active else None
                try:
                    await self._point_at(slot, previous=keep)
                except Exception as exc:
                    return Event.RETRY, f"rolling back to {destination} failed: {exc}"
                return Event.SUCCESS, None
        return Event.FAILURE, f"cannot roll back: {destination} is no longer on this device"

    async def _point_at(self, slot: Slot | None, *, previous: Slot | None) -> None:
        """Switch the pointer to ``slot`` and serve it (loading it unless it serves already)."""
        runtime: InferenceRuntime | None = None
        if slot is not None:
            served = self.agent.runtime
            if served is not None and served.manifest.artifact.sha256 == \
                    slot.manifest.artifact.sha256:
                runtime = served
            else:
                path = await asyncio.to_thread(self.slots.verify, slot)
                runtime = await asyncio.to_thread(load_runtime, path, slot.manifest)
        self.pointer = SlotPointer(slot, previous)
        await _small_io(self.slots.switch, self.pointer)
        self.agent.serve(slot, runtime)

    # -- chunks ------------------------------------------------------------------------------------

    def request_missing(self) -> None:
        download = self.download
        if download is None or not self.agent.link.connected or self._paused:
            return
        asyncio.create_task(self._subscribe_and_request(download))

    async def _subscribe_and_request(self, download: ArtifactDownload) -> None:
        sha = download.ref.sha256
        link = self.agent.link
        try:
            # chunks published before the broker confirms the subscription would be missed
            await link.subscribe_and_wait(chunk_wildcard(sha))
        except (TimeoutError, ConnectionError, PermissionError) as exc:
            log.warning("%s: cannot subscribe to chunks of %s: %s", self.agent.device_id,
                        sha[:12], exc)
            return
        ranges = download.missing_ranges()
        if ranges and self.download is download:
            link.publish(self.agent.topic(DeviceChannel.ARTIFACT_REQUEST),
                         encode(ArtifactRequest(sha, tuple(ranges))))

    def on_chunk(self, chunk: ChunkTopic, payload: bytes) -> None:
        download = self.download
        if download is None or download.ref.sha256 != chunk.sha256 or self._paused:
            return  # a broadcast for another device's update, or one already finished
        if not download.accept(chunk.index, payload):
            return
        self.last_chunk_at = time.monotonic()
        pause = self._pause
        if pause is not None and pause.state is UpdateState.DOWNLOADING and \
                pause.after_chunks is not None and download.received >= pause.after_chunks:
            download.close()
            self.agent.link.unsubscribe(chunk_wildcard(chunk.sha256))
            self._enter_pause("downloading", f" after {download.received} chunks")
            return
        if download.complete:
            self.agent.link.unsubscribe(chunk_wildcard(chunk.sha256))
            self._download_done.set()
        elif time.monotonic() - self._last_progress_report > 1.0:
            self._last_progress_report = time.monotonic()
            self.agent.report()

    def _discard_download(self) -> None:
        download, self.download = self.download, None
        if download is not None:
            if self.agent.link.connected:
                self.agent.link.unsubscribe(chunk_wildcard(download.ref.sha256))
            download.discard()

    def _clean_partials(self, keep: str | None) -> None:
        if self.download_dir.exists():
            for part in self.download_dir.glob("*.part"):
                if keep is None or not part.name.startswith(keep):
                    part.unlink(missing_ok=True)

    # -- what the agent reports --------------------------------------------------------------------

    @property
    def reported_state(self) -> str:
        state = self.step.state
        if state is UpdateState.IDLE and self.agent.active is not None:
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

    def report_fields(self) -> dict[str, Any]:
        state = self.step.state
        target = self.target_manifest
        staged = None
        if state in (UpdateState.STAGED, UpdateState.ACTIVATING) and target is not None:
            staged = _ref(target)
        previous = self.pointer.previous
        progress = None
        if self.download is not None:
            progress = (self.download.received, self.download.ref.chunk_count)
        return {"state": self.reported_state,
                "target": _ref(target) if target is not None else None,
                "staged": staged, "previous": previous.ref if previous else None,
                "last_error": self.last_error, "progress": progress}

    def status(self) -> dict[str, Any]:
        fields = self.report_fields()
        return {"update_state": self.step.state.value,
                "staged": str(fields["staged"]) if fields["staged"] else None,
                "previous": str(fields["previous"]) if fields["previous"] else None,
                "target": str(fields["target"]) if fields["target"] else None,
                "rejected_desired": self.rejected,
                "trust": "enforcing" if self.gate.enforcing else "development (unsigned accepted)"}

