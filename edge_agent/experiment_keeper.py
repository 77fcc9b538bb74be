"""The agent's side of an experiment order: verify, download, load, admit, attach, stop.

An :class:`~edgewise_wire.experiments.ExperimentOrder` arrives retained on the device's
``experiment`` topic (again after every reconnect and restart). The keeper:

1. checks the candidate like a desired state (:class:`~edge_agent.desired_gate.DesiredGate`:
   the signed envelope from a trusted key, unexpired, this device class, a format it runs, no
   bigger than ``max_model_bytes``) and that the order's control is the model serving now;
2. refuses early when the two sessions cannot fit (:func:`edge_agent.shadow.admit`, with the
   candidate's artifact size);
3. downloads the artifact through the same chunked, resumable path as an update (its own
   :class:`~edge_agent.artifact_fetch.ArtifactFetch`, every chunk checked against the signed
   hash) into its own slot directory ``experiment/`` (the update's pruning never touches it; a
   verified file there is reused after a restart without downloading again);
4. loads it (in a worker thread), runs its smoke tests, admits it again with the session's
   measured memory, and attaches an :class:`~edge_agent.shadow.Experiment` to the agent.

Any refusal leaves the served model exactly as it was and is reported once, as an
``experiment`` window with ``refused`` set. ``mode: stop`` (or another experiment) detaches the
running one and deletes its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Protocol

from edge_agent.artifact_fetch import ArtifactFetch
from edge_agent.desired_gate import DesiredGate, Rejected
from edge_agent.download import ArtifactVerificationError
from edge_agent.parking import Parking
from edge_agent.runtime import InferenceRuntime, RuntimeLoadError, load_runtime, smoke_test
from edge_agent.shadow import Experiment, ShadowRefused, admit, refusal_record
from edge_agent.slots import artifact_name
from edge_agent.update.ports import ChunkLink
from edgewise_wire import Desired, Manifest, ModelRef
from edgewise_wire.experiments import ExperimentOrder
from edgewise_wire.topics import ROOT, ChunkTopic, DeviceChannel, device_topic

log = logging.getLogger("edgewise.agent.experiment")


class ExperimentHost(Protocol):
    """What the keeper needs of the agent."""

    active: ModelRef | None
    runtime: InferenceRuntime | None
    experiment: Experiment | None

    def report(self) -> None: ...

    def queue_record(self, record: dict[str, Any]) -> None: ...


class ExperimentKeeper:
    def __init__(self, host: ExperimentHost, link: ChunkLink, gate: DesiredGate, *,
                 data_dir: Path, device_id: str, small_io: Executor,
                 clock: Callable[[], float], repair_interval_s: float,
                 model_memory_bytes: int | None, feedback_memory: int,
                 root: str = ROOT) -> None:
        self.host = host
        self.gate = gate
        self.device_id = device_id
        self.small_io = small_io
        self.clock = clock
        self.model_memory_bytes = model_memory_bytes
        self.feedback_memory = feedback_memory
        self.slot_dir = data_dir / "experiment"
        self.fetch = ArtifactFetch(
            link, device_topic(device_id, DeviceChannel.ARTIFACT_REQUEST, root=root),
            self.slot_dir, device_id=device_id, report=host.report,
            parking=Parking(None, data_dir / "experiment-paused", device_id),
            repair_interval_s=repair_interval_s, root=root)
        self.order: ExperimentOrder | None = None
        self.refused: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._repair: asyncio.Task[None] | None = None

    # -- messages -----------------------------------------------------------------------

    def on_order(self, order: ExperimentOrder) -> None:
        if self.order is not None and order.experiment_id == self.order.experiment_id \
                and order.mode == self.order.mode and self.refused is None:
            # the retained order again after a reconnect, or re-signed: already carried out.
            # A refused one is tried again (its signature may have expired, or memory freed)
            return
        self.order = order
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.create_task(self._carry_out(order))

    def on_chunk(self, chunk: ChunkTopic, payload: bytes) -> None:
        self.fetch.on_chunk(chunk, payload)

    def on_connected(self) -> None:
        self.fetch.on_connected()

    def start(self) -> None:
        self._repair = asyncio.create_task(self.fetch.repair_loop())

    def close(self) -> None:
        for task in (self._task, self._repair):
            if task is not None:
                task.cancel()
        self.fetch.close()
        self._detach()

    # -- carrying an order out ------------------------------------------------------------

    async def _carry_out(self, order: ExperimentOrder) -> None:
        self._detach()
        if order.mode == "stop" or order.candidate is None:
            self._clean(keep=None)
            log.info("%s: experiment %s stopped", self.device_id, order.experiment_id)
            return
        try:
            experiment = await self._prepare(order, order.candidate)
        except (Rejected, ShadowRefused, RuntimeLoadError) as exc:
            self._refuse(order, str(exc))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failing candidate must never take the agent down
            log.exception("%s: experiment %s failed", self.device_id, order.experiment_id)
            self._refuse(order, f"candidate failed to load: {exc}")
            return
        if self.order is not order:
            experiment.close()
            return
        self.refused = None
        self.host.experiment = experiment
        log.info("%s: experiment %s running (%s, candidate %s:%d)", self.device_id,
                 order.experiment_id, order.mode, order.candidate.model, order.candidate.version)
        self.host.report()

    async def _prepare(self, order: ExperimentOrder, manifest: Manifest) -> Experiment:
        active = self.host.active
        if order.control is None or active is None or active.sha256 != order.control.sha256:
            raise Rejected(f"the experiment's control is {order.control}, this device serves "
                           f"{active or 'no model'}")
        self.gate.check(Desired(f"experiment-{order.experiment_id}", manifest, ts=order.ts,
                                envelope=order.envelope), None, now=self.clock(),
                        sealed=False)
        runtime = self.host.runtime
        control_bytes = getattr(runtime, "session_bytes", None)
        if order.mode == "ab" and order.share == 0.0:
            # a control device of a split by device: it reports its arm, holds no candidate
            self._clean(keep=None)
            return Experiment(order.experiment_id, "ab", None, share=0.0,
                              started_ts=self.clock(), control_memory=control_bytes,
                              memory=self.feedback_memory,
                              candidate_ref=(manifest.model, manifest.version))
        admit(manifest.artifact.size, control_session_bytes=control_bytes,
              max_model_bytes=self.gate.max_model_bytes,
              model_memory_bytes=self.model_memory_bytes)
        path = self.slot_dir / artifact_name(manifest)
        if not await asyncio.get_running_loop().run_in_executor(
                self.small_io, _verified, path, manifest):
            await self.fetch.fetch(manifest.artifact)
            download = self.fetch.download
            if download is None or not download.complete:
                raise Rejected("the candidate's download did not complete")
            self.fetch.keep(None)
            try:  # the whole file hashed again against the signed sha256, then moved in place
                await asyncio.get_running_loop().run_in_executor(
                    self.small_io, download.finalize, path)
            except ArtifactVerificationError as exc:
                raise Rejected(f"the downloaded candidate is not the one signed for: {exc}") \
                    from None
        self._clean(keep=path.name)
        candidate = await asyncio.get_running_loop().run_in_executor(
            self.small_io, _load, path, manifest)
        admit(manifest.artifact.size, control_session_bytes=control_bytes,
              candidate_session_bytes=getattr(candidate, "session_bytes", None),
              max_model_bytes=self.gate.max_model_bytes,
              model_memory_bytes=self.model_memory_bytes)
        return Experiment(order.experiment_id, order.mode, candidate, sample=order.sample,
                          share=order.share, started_ts=self.clock(),
                          control_memory=control_bytes, memory=self.feedback_memory)

    def _refuse(self, order: ExperimentOrder, reason: str) -> None:
        log.warning("%s: experiment %s refused: %s", self.device_id, order.experiment_id, reason)
        self.refused = reason
        self.host.queue_record(refusal_record(order.experiment_id, order.mode, reason,
                                              self.clock()))

    def _detach(self) -> None:
        experiment, self.host.experiment = self.host.experiment, None
        if experiment is not None:
            experiment.close()

    def _clean(self, keep: str | None) -> None:
        if self.slot_dir.exists():
            for path in self.slot_dir.iterdir():
                if path.name != keep and not path.name.endswith(".part"):
                    with contextlib.suppress(OSError):
                        path.unlink()


def _verified(path: Path, manifest: Manifest) -> bool:
    from edge_agent.runtime import file_sha256

    try:
        return path.stat().st_size == manifest.artifact.size and \
            file_sha256(path) == manifest.artifact.sha256
    except FileNotFoundError:
        return False


def _load(path: Path, manifest: Manifest) -> InferenceRuntime:
    runtime = load_runtime(path, manifest)
    smoke_test(runtime)
    return runtime
