"""Agent self-update, the device's half: a signed agent bundle from the controller, downloaded
over the models' resumable chunk path, verified whole, and handed to the launcher.

Only an agent started by ``edgewise-agent-launcher`` takes part: the launcher tells it where its
slots are (``EDGEWISE_LAUNCHER_ROOT``) and which version it runs as (``EDGEWISE_AGENT_VERSION``).
A ``desired_agent`` message (retained, on ``agent/desired``) is carried out in this order, and
each refusal is logged, counted and reported (``agent_update`` in the reported state):

1. the envelope must verify against the trusted keys (:func:`verify_agent_envelope`: signature,
   expiry, device class); an agent without trusted keys takes no agent bundle at all, signed or
   not (a model may be tried unsigned in development; code that replaces the agent may not);
2. the manifest must be an agent manifest (``kind: "agent"``);
   and the order's *seal* (:mod:`edgewise_wire.seal`) must be for this device and this envelope,
   with a counter above the highest agent order this device accepted, or the very seal accepted
   last (the retained copy delivered again): a captured older order is refused once a newer one
   was taken (:meth:`DesiredGate.check_agent_order`; unsealed: only while no sealed one was
   taken). A new seal is recorded in ``trust.json`` before anything else is done. A refused seal
   leaves the state and target as they were (the device stays where it is; reporting
   ``refused`` for the current target would count it as failed in an agent rollout): the
   reason goes to ``error``, and the refusal is counted;
3. nothing happens if that version already runs, is already staged or on probation, or failed
   its probation on this device before (the launcher restored the old agent; retrying the same
   bundle would loop) -- a new version is needed;
4. the archive is downloaded chunk by chunk, each chunk checked against its signed hash, then
   checked whole (sha256 and size), and only then staged with the launcher's own
   :meth:`SlotRoot.stage` (which checks the sha256 once more, unpacks beside the standby slot and
   writes ``staged``). The running launcher switches within a second, under its probation.

The pure part (:func:`decide`, :func:`learn_outcome`) is separate from the I/O.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.artifact_fetch import ArtifactFetch
from edge_agent.desired_gate import DesiredGate, Rejected
from edge_agent.download import ArtifactVerificationError
from edge_agent.launcher.plan import Journal, Phase
from edge_agent.launcher.slots import ROOT_ENV, VERSION_ENV, LauncherError, SlotRoot
from edge_agent.parking import Parking
from edge_agent.update.ports import ChunkLink
from edgewise_wire.envelope import TrustError, verify_agent_envelope
from edgewise_wire.errors import SchemaError
from edgewise_wire.manifest import AgentManifest
from edgewise_wire.order_messages import DesiredAgent
from edgewise_wire.topics import ROOT, ChunkTopic, DeviceChannel, device_topic

log = logging.getLogger("edgewise.agent.self_update")

MEMORY_FILE = "agent-update.json"


class Action(enum.Enum):
    CURRENT = "current"  # this version runs already, committed
    ON_PROBATION = "on_probation"  # this version runs, under the launcher's probation
    IN_FLIGHT = "in_flight"  # the launcher has it staged or on probation
    BUSY = "busy"  # another version is on probation: wait for its outcome
    FAILED_BEFORE = "failed_before"  # it failed its probation here; a new version is needed
    STAGE = "stage"


@dataclass(frozen=True)
class Memory:
    """What this device remembers across agent restarts (``{data_dir}/agent-update.json``):
    the version it last staged, and the versions the launcher rolled back, with the reason."""

    staged: str | None = None
    failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"staged": self.staged, "failed": dict(self.failed)}

    @classmethod
    def from_dict(cls, d: Any) -> Memory:
        if not isinstance(d, dict):
            return cls()
        staged = d.get("staged")
        failed = d.get("failed")
        return cls(staged if isinstance(staged, str) else None,
                   {str(k): str(v) for k, v in failed.items()} if isinstance(failed, dict) else {})


def learn_outcome(memory: Memory, running: str, journal: Journal) -> Memory:
    """After a restart: a version this agent staged that does not run, while the launcher is at
    rest, was rolled back by the launcher's probation; remember it as failed."""
    if memory.staged is None or journal.phase is not Phase.COMMITTED:
        return memory
    if memory.staged == running:
        return Memory(None, memory.failed)
    reason = journal.last_error or "the launcher restored the previous agent"
    return Memory(None, {**memory.failed, memory.staged: reason})


def decide(version: str, running: str, journal: Journal, failed: Mapping[str, str]) -> Action:
    if version == running:
        on_trial = journal.phase is Phase.PROBATION and journal.trial_version == running
        return Action.ON_PROBATION if on_trial else Action.CURRENT
    if journal.phase is not Phase.COMMITTED and journal.trial_version == version:
        return Action.IN_FLIGHT
    if journal.phase in (Phase.PROBATION, Phase.ROLLING_BACK):
        return Action.BUSY
    if version in failed:
        return Action.FAILED_BEFORE
    return Action.STAGE


def launcher_root_from_env(environ: Mapping[str, str] = os.environ) -> Path | None:
    root = environ.get(ROOT_ENV)
    return Path(root) if root else None


def running_version_from_env(default: str, environ: Mapping[str, str] = os.environ) -> str:
    return environ.get(VERSION_ENV) or default


class AgentSelfUpdate:
    def __init__(self, link: ChunkLink, *, device_id: str, data_dir: Path, launcher_root: Path,
                 running_version: str, trusted_keys: dict[str, bytes], device_class: str,
                 clock: Callable[[], float], report: Callable[[], None],
                 repair_interval_s: float, use_url: bool, root: str = ROOT,
                 gate: DesiredGate | None = None) -> None:
        """``gate``: the update path's, which holds the trust state (``trust.json``) where the
        highest agent order's seal is kept; None: one of its own, in memory (unit tests)."""
        self.device_id = device_id
        self.data_dir = data_dir
        self.slots = SlotRoot(launcher_root)
        self.running_version = running_version
        self.trusted_keys = trusted_keys
        self.device_class = device_class
        self.gate = gate if gate is not None else DesiredGate(
            trusted_keys, device_id=device_id, device_class=device_class, max_model_bytes=None)
        self.clock = clock
        self.report = report
        self.fetch = ArtifactFetch(
            link, device_topic(device_id, DeviceChannel.ARTIFACT_REQUEST, root=root),
            data_dir / "agent-download", device_id=device_id, report=report,
            parking=Parking(None, data_dir / "paused-in", device_id),
            repair_interval_s=repair_interval_s, use_url=use_url, root=root)
        self.state = "idle"
        self.target: str | None = None
        self.last_error: str | None = None
        self.refused = 0
        self._inbox: asyncio.Queue[DesiredAgent] = asyncio.Queue()
        self._memory_path = data_dir / MEMORY_FILE
        self._commit_watch: asyncio.Task[None] | None = None

    # -- the agent's calls ---------------------------------------------------------------------

    def tasks(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._run()), asyncio.create_task(self.fetch.repair_loop())]

    def on_desired(self, message: DesiredAgent) -> None:
        self._inbox.put_nowait(message)

    def owns_chunk(self, chunk: ChunkTopic) -> bool:
        download = self.fetch.download
        return download is not None and download.ref.sha256 == chunk.sha256

    def on_chunk(self, chunk: ChunkTopic, payload: bytes) -> None:
        self.fetch.on_chunk(chunk, payload)

    def on_connected(self) -> None:
        self.fetch.on_connected()

    def report_fields(self) -> dict[str, Any]:
        return {"running": self.running_version, "target": self.target, "state": self.state,
                "error": self.last_error}

    def close(self) -> None:
        self.fetch.close()
        if self._commit_watch is not None:
            self._commit_watch.cancel()

    # -- the work ------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            message = await self._inbox.get()
            while not self._inbox.empty():  # only the newest counts (retained, re-sent)
                message = self._inbox.get_nowait()
            try:
                await self._apply(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one bad bundle must not end the loop
                self._refuse(self.target, f"unexpected error: {exc!r}")

    async def _apply(self, message: DesiredAgent) -> None:
        if message.signed is None:
            return
        if not self.trusted_keys:
            self._refuse(None, "no trusted_keys configured: agent bundles are only taken signed")
            return
        try:
            raw = verify_agent_envelope(message.signed, self.trusted_keys, now=self.clock(),
                                        device_class=self.device_class)
            manifest = AgentManifest.from_dict(raw, "signed.manifest")
        except (TrustError, SchemaError) as exc:
            self._refuse(None, f"agent bundle refused: {exc}")
            return
        try:
            seal, fresh = self.gate.check_agent_order(message)
        except Rejected as exc:
            self.refused += 1
            log.error("%s: agent %s: %s", self.device_id, manifest.version, exc)
            self._set(self.state, f"agent {manifest.version}: {exc}")
            return
        if fresh and seal is not None:
            # durable before anything is done: after a crash the counter is still used up
            await asyncio.to_thread(self.gate.record_agent, seal)
        journal = await asyncio.to_thread(self.slots.load)
        remembered = await asyncio.to_thread(self._load_memory)
        memory = learn_outcome(remembered, self.running_version, journal)
        if memory != remembered:
            await asyncio.to_thread(self._save_memory, memory)
        action = decide(manifest.version, self.running_version, journal, memory.failed)
        self.target = manifest.version
        if action is Action.CURRENT:
            self._set("current", None)
        elif action is Action.ON_PROBATION:
            # "current" only once the launcher committed it: a controller rolling agents out
            # in waves counts a device as done then, not while it may still be restored
            self._set("probation", None)
            if self._commit_watch is None or self._commit_watch.done():
                self._commit_watch = asyncio.create_task(self._await_commit(manifest.version))
        elif action is Action.IN_FLIGHT:
            self._set("staged", None)
        elif action is Action.BUSY:
            self._set("waiting", f"agent {journal.trial_version} is on probation")
        elif action is Action.FAILED_BEFORE:
            self._set("failed", f"agent {manifest.version} failed its probation here before "
                                f"({memory.failed[manifest.version]}); push a new version")
        else:
            await self._download_and_stage(manifest, memory)

    async def _download_and_stage(self, manifest: AgentManifest, memory: Memory) -> None:
        ref = manifest.artifact
        self._set("downloading", None)
        await self.fetch.fetch(ref)
        download = self.fetch.download
        if download is None:
            self._refuse(manifest.version, "the download was discarded")
            return
        archive = self.data_dir / "agent-download" / f"agent-{ref.sha256}.tar"
        try:
            await asyncio.to_thread(download.finalize, archive)
        except (ArtifactVerificationError, OSError) as exc:
            self._refuse(manifest.version, f"agent bundle {manifest.version} refused: {exc}")
            return
        finally:
            self.fetch.keep(None)
        # remembered before the launcher can see it: once staged, the launcher stops this agent
        # within a second, and an agent that did not remember what it staged would stage a
        # version that failed its probation again when the old agent is restored
        await asyncio.to_thread(self._save_memory, Memory(manifest.version, memory.failed))
        try:
            await asyncio.to_thread(self.slots.stage, archive, ref.sha256, manifest.version)
        except LauncherError as exc:
            await asyncio.to_thread(self._save_memory, memory)
            self._refuse(manifest.version, f"the launcher did not stage {manifest.version}: {exc}")
            return
        finally:
            archive.unlink(missing_ok=True)
        log.warning("%s: agent %s verified and staged; the launcher switches to it",
                    self.device_id, manifest.version)
        self._set("staged", None)

    async def _await_commit(self, version: str, poll_s: float = 1.0) -> None:
        """Report ``current`` once the launcher committed this agent (if it restores the old
        one instead, it stops this one first: nothing to report from here)."""
        while True:
            await asyncio.sleep(poll_s)
            journal = await asyncio.to_thread(self.slots.load)
            if journal.phase is Phase.COMMITTED:
                if self.target == version:
                    self._set("current", None)
                return

    # -- helpers -------------------------------------------------------------------------------

    def _set(self, state: str, error: str | None) -> None:
        self.state, self.last_error = state, error
        self.report()

    def _refuse(self, version: str | None, reason: str) -> None:
        self.refused += 1
        log.error("%s: %s", self.device_id, reason)
        if version is not None:
            self.target = version
        self._set("refused", reason)

    def _load_memory(self) -> Memory:
        try:
            return Memory.from_dict(json.loads(self._memory_path.read_text()))
        except (OSError, ValueError):
            return Memory()

    def _save_memory(self, memory: Memory) -> None:
        tmp = self._memory_path.with_suffix(".tmp")
        self._memory_path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(memory.to_dict()))
        os.replace(tmp, self._memory_path)
