"""The work of each working update state, for the updater's drive.

Each piece of work ends with the :class:`~edge_agent.update.Event` the state machine takes next
(and an error for the journal), and each is safe to repeat after a crash at any instant
(docs/agent.md, "Crash safety"): the updater journals the step before the work starts.
"""

from __future__ import annotations

import asyncio
import logging
import time

from edge_agent.artifact_fetch import ArtifactFetch
from edge_agent.download import ArtifactVerificationError
from edge_agent.runtime import load_runtime, smoke_test
from edge_agent.slot_keeper import SlotKeeper, ref_of
from edge_agent.slots import Slot, artifact_name
from edge_agent.update import Event, UpdateState, UpdateStep
from edge_agent.update.ports import UpdateHost
from edge_agent.update.probation import ProbationWatch
from edge_agent.update.rollback import RollbackTo, rollback_to
from edgewise_wire import Desired, Manifest, ModelRef, ProbationPolicy

log = logging.getLogger("edgewise.agent.update")

PROBATION_TICK_S = 0.1

Outcome = tuple[Event, str | None]


def ref_of_manifest(manifest: Manifest) -> ModelRef:
    return ModelRef(manifest.model, manifest.version, manifest.artifact.sha256)


class StateWork:
    def __init__(self, slots: SlotKeeper, fetch: ArtifactFetch, host: UpdateHost, *,
                 default_probation: ProbationPolicy, device_id: str) -> None:
        self.slots = slots
        self.fetch = fetch
        self.host = host
        self.default_probation = default_probation
        self.device_id = device_id
        # the artifact verification put into models/ in this process (staged need not hash it
        # again); reset by a new target
        self.verified_sha: str | None = None
        # set while a model is on probation: the agent feeds it that model's calls
        self.probation: ProbationWatch | None = None
        self.probation_sha: str | None = None
        # why the probation in progress is to end now (the version was withdrawn)
        self.abort_probation: str | None = None

    async def run(self, step: UpdateStep, desired: Desired | None) -> Outcome:
        """Do the work of ``step``'s state for the update ``desired`` carries out."""
        match step.state:
            case UpdateState.DOWNLOADING:
                return await self._download(_manifest(desired))
            case UpdateState.VERIFYING:
                return await self._verify(_manifest(desired))
            case UpdateState.STAGED:
                return await self._staged(_manifest(desired))
            case UpdateState.ACTIVATING:
                return await self._activate(desired, _manifest(desired))
            case UpdateState.PROBATION:
                return await self._probation(desired, _manifest(desired))
            case UpdateState.ROLLING_BACK:
                return await self._rollback(step.previous)
        raise ValueError(f"{step.state.value} is a state at rest: there is no work to do")

    async def _download(self, manifest: Manifest) -> Outcome:
        if await self.slots.has_verified(manifest):
            return Event.SUCCESS, None  # on disk already (a model rolled back from, say)
        await self.fetch.fetch(manifest.artifact)
        return Event.SUCCESS, None

    async def _verify(self, manifest: Manifest) -> Outcome:
        if await self.slots.has_verified(manifest):
            self.fetch.discard()
            self.verified_sha = manifest.artifact.sha256
            return Event.SUCCESS, None
        download = self.fetch.current(manifest.artifact)
        if not download.complete:
            self.fetch.keep(download)
            return Event.RETRY, "the artifact was incomplete after a restart"
        try:
            await asyncio.to_thread(download.finalize, self.slots.store.staged_path(manifest))
        except ArtifactVerificationError as exc:
            self.fetch.keep(None)
            return Event.FAILURE, f"the downloaded artifact is not the one signed for: {exc}"
        self.fetch.keep(None)
        self.verified_sha = manifest.artifact.sha256
        return Event.SUCCESS, None

    async def _staged(self, manifest: Manifest) -> Outcome:
        if self.verified_sha != manifest.artifact.sha256 and \
                not await self.slots.has_verified(manifest):
            return Event.RETRY, "the staged artifact was damaged on disk; downloading it again"
        return Event.SUCCESS, None

    async def _activate(self, desired: Desired | None, manifest: Manifest) -> Outcome:
        target = ref_of_manifest(manifest)
        pointer = self.slots.pointer
        if pointer.active is not None and pointer.active.ref == target:
            # a crash after the switch: the previous slot is authoritative until activation
            # completes, so serve it and activate again
            await self.slots.point_at(pointer.previous, previous=None)
        path = self.slots.store.staged_path(manifest)
        try:
            runtime = await asyncio.to_thread(load_runtime, path, manifest)
            await asyncio.to_thread(smoke_test, runtime)
        except Exception as exc:
            return Event.FAILURE, f"activation of {target} failed: {exc}"
        assert desired is not None
        new = Slot(manifest, artifact_name(manifest), desired.deployment_id)
        await self.slots.activate(new, runtime)
        return Event.SUCCESS, None

    async def _probation(self, desired: Desired | None, manifest: Manifest) -> Outcome:
        active = self.slots.pointer.active
        if active is None or active.manifest.artifact.sha256 != manifest.artifact.sha256 \
                or self.host.active is None:
            return Event.FAILURE, "the new model is not in the active slot after a restart"
        assert desired is not None
        policy = desired.probation or manifest.probation or self.default_probation
        # the window is measured on the monotonic clock: a wall clock set meanwhile (NTP, a
        # board without a real-time clock) must not end it early or stretch it
        watch = ProbationWatch(policy, time.monotonic())
        self.probation, self.probation_sha = watch, manifest.artifact.sha256
        try:
            while True:
                if self.abort_probation is not None:
                    reason, self.abort_probation = self.abort_probation, None
                    return Event.ABORTED, reason
                verdict = watch.verdict(time.monotonic())
                if verdict is not None:
                    log.info("%s: %s", self.device_id, verdict.reason)
                    if verdict.passed:
                        return Event.SUCCESS, None
                    return Event.FAILURE, verdict.reason
                await asyncio.sleep(min(PROBATION_TICK_S, watch.remaining_s(time.monotonic()))
                                    or PROBATION_TICK_S)
        finally:
            self.probation, self.probation_sha = None, None

    async def _rollback(self, destination: ModelRef | None) -> Outcome:
        """Back to ``destination``, what served when the update began."""
        pointer = self.slots.pointer
        match rollback_to(destination, ref_of(pointer.active), ref_of(pointer.previous)):
            case RollbackTo.NOTHING:
                await self.slots.point_at(None, previous=None)
                return Event.SUCCESS, None
            case RollbackTo.ACTIVE_SLOT:
                slot, keep = pointer.active, pointer.previous
            case RollbackTo.PREVIOUS_SLOT:
                slot, keep = pointer.previous, None
            case RollbackTo.GONE:
                return Event.FAILURE, \
                    f"cannot roll back: {destination} is no longer on this device"
        try:
            await self.slots.point_at(slot, previous=keep)
        except Exception as exc:
            return Event.RETRY, f"rolling back to {destination} failed: {exc}"
        return Event.SUCCESS, None


def _manifest(desired: Desired | None) -> Manifest:
    assert desired is not None and desired.manifest is not None, \
        "the state's work needs the desired state with the model being installed"
    return desired.manifest
