"""The edge agent: follows its desired model, serves predictions, forwards telemetry.

One ``EdgeAgent`` is one device. It runs on an asyncio loop it does not own, so the daemon runs
one per process and the simulator runs a thousand on one loop, with the same code. Whoever runs
it passes what agents on one loop share or what a test controls: the wall clock, the small-I/O
thread pool, the update test hook.

Update path (:mod:`edge_agent.updater`, docs/agent.md): a desired state (retained) is checked
(signature, expiry, device class, version), :func:`edge_agent.update.plan.plan` decides what it
means, and the updater carries it out by the pure state machine in :mod:`edge_agent.update`:
download chunks, verify, stage beside the running model, activate (smoke test, atomic pointer
switch), probation, commit, or roll back to the previous slot. Each step is journaled before its
work starts, so a crash resumes where it was. A failure anywhere leaves a verified model serving
and is reported in words.

Telemetry path (:mod:`edge_agent.telemetry`): ``predict()`` appends records to an in-memory
list (the prediction path does no disk I/O); every ``telemetry_flush_interval_s`` they go to the
SQLite outbox in one transaction; batches leave the outbox in order and are deleted only when
the controller acknowledges them (:class:`~edge_agent.telemetry.sender.TelemetrySender`).

Monitoring: every call also feeds the active model's monitoring window
(:class:`~edge_agent.model_monitor.ModelMonitor`); every ``metrics_window_s`` the window summary
goes to the outbox as a ``metrics`` record. Raw prediction records are sampled at
``prediction_sample_rate``; the window summaries count every prediction. Batches carry the
outbox's epoch, and acks for another epoch (an outbox this agent replaced) are ignored.

Device health (:class:`~edge_agent.health.agent_health.AgentHealth`): sampled on the telemetry
loop, each call charged to its model version, one ``health`` record per window.

Why this module is over 500 lines: it is where the parts meet (MQTT link, updater, telemetry
uplink, monitor, health), and the prediction path, which on every call feeds the monitor, the probation
window and the telemetry records, is kept whole in one place. The decisions are not here: they
are the pure cores (:mod:`edge_agent.update.plan`, :mod:`edge_agent.telemetry.sender`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from edge_agent import __version__
from edge_agent.config import AgentConfig
from edge_agent.desired_gate import load_trusted_keys
from edge_agent.download import ArtifactDownload
from edge_agent.experiment_keeper import ExperimentKeeper
from edge_agent.health.agent_health import AgentHealth
from edge_agent.health.log_ring import LogRing
from edge_agent.health.sampler import HealthSampler, ReadingSource
from edge_agent.health.sources import HealthSources
from edge_agent.message_router import MessageRouter
from edge_agent.model_monitor import ModelMonitor
from edge_agent.outbox import (
    OutboxError,
    OverflowPolicy,
    TelemetryOutbox,
)
from edge_agent.recent import RecentPredictions
from edge_agent.runtime import InferenceRuntime, InvalidInput, monitor_rows, prepare_features
from edge_agent.self_update import (
    AgentSelfUpdate,
    launcher_root_from_env,
    running_version_from_env,
)
from edge_agent.shadow import Experiment
from edge_agent.slots import Slot
from edge_agent.small_io import small_io_executor
from edge_agent.telemetry.records import CallRecords, encode_pending
from edge_agent.telemetry.sender import TelemetrySender
from edge_agent.telemetry.uplink import TelemetryUplink, open_outbox
from edge_agent.update.pause import UpdatePause
from edge_agent.update.ports import UpdateSettings
from edge_agent.updater import Updater
from edgewise_mqtt.link import MqttLink, Will
from edgewise_wire import (
    Ack,
    LogsReply,
    LogsRequest,
    Manifest,
    ModelRef,
    Presence,
    Reported,
    SamplingOrder,
    encode,
)
from edgewise_wire.experiments import request_arm
from edgewise_wire.topics import (
    DeviceChannel,
    device_topic,
)

log = logging.getLogger("edgewise.agent")


class NoActiveModel(RuntimeError):
    """The device has no verified model yet; predictions are refused, not guessed."""


@dataclass(slots=True)
class Prediction:
    prediction_id: str
    label: Any
    scores: list[float] | None
    model: str
    version: int
    latency_ms: float


class EdgeAgent:
    """``clock``: the device's wall clock, for every time the agent stamps or judges by
    (telemetry records, reports, presence, manifest expiry, the update journal); the simulator
    passes a skewed one. Durations (timeouts, windows, latency) are measured on the monotonic
    clock, as on a device whose real-time clock is wrong. ``small_io``: the thread pool for the update path's small blocking calls
    (:mod:`edge_agent.small_io`); agents on one loop share one (the simulator's fleet passes
    its own). Without one the agent creates its own and shuts it down when it stops.
    ``pause``: the update test hook (:mod:`edge_agent.update.pause`), never set on a device."""

    def __init__(self, config: AgentConfig, *, clock: Callable[[], float] = time.time,
                 small_io: Executor | None = None, pause: UpdatePause | None = None,
                 health_sources: ReadingSource | None = None) -> None:
        self.config = config
        self._clock = clock
        self.device_id = config.device_id
        self._outbox_path = config.data_dir / "outbox.sqlite"
        # under edgewise-agent-launcher: the version of the slot it runs from (what it was
        # staged as); otherwise the installed distribution's version
        self.agent_version = running_version_from_env(__version__)
        self.runtime: InferenceRuntime | None = None
        self.active: ModelRef | None = None
        self.deployment_id: str | None = None
        self.outbox: TelemetryOutbox | None = None
        self.dropped_messages: Counter[str] = Counter()
        self.predictions_served = 0
        # records for the outbox, in order: dicts, and one CallRecords per sampled inference
        # call (expanded into prediction records at flush, off the prediction path)
        self._pending_records: list[dict[str, Any] | CallRecords] = []
        self._boot_id = os.urandom(4).hex()
        self._columnar = config.telemetry_columnar
        self._recent = RecentPredictions(self._boot_id, config.feedback_memory)
        self._next_prediction = 0
        self._tasks: list[asyncio.Task[Any]] = []
        self._closed = False
        # -- monitoring
        self.monitor = ModelMonitor(config.metrics_window_s, config.device_id)
        self._sampler = random.Random()
        # the share of prediction records this device's group keeps, set from the controller
        # (its retained "sampling" order); None: the local prediction_sample_rate applies
        self.sample_share: float | None = None
        # -- device health: sampled in the telemetry loop, one "health" record per window;
        # health_sources: a test's or the simulator's fake /proc and /sys
        self.health: AgentHealth | None = None
        if config.health_sample_s > 0:
            self.health = AgentHealth(
                HealthSampler(health_sources or HealthSources(config.data_dir),
                              sample_s=min(config.health_sample_s, config.metrics_window_s),
                              window_s=config.metrics_window_s, started_ts=clock(),
                              now=clock(), mono=time.monotonic(), device_id=config.device_id),
                clock=clock, connects=lambda: self.link.connect_count,
                gauges=self._health_gauges)
        self.log_ring: LogRing | None = None
        if config.log_ring_lines > 0:
            self.log_ring = LogRing(config.log_ring_lines,
                                    logging.getLevelName(config.log_ring_level),
                                    mentioning=config.device_id)
        self.link = MqttLink(
            f"ew-agent-{self.device_id}",
            config.broker,
            # the router hands messages to parts built on this link, so it comes after them
            on_message=lambda topic, payload: self.messages.on_message(topic, payload),
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            will=Will(self.topic(DeviceChannel.PRESENCE),
                      encode(Presence(online=False, ts=clock(), agent_version=self.agent_version,
                                      device_class=config.device_class))),
            keepalive=config.keepalive_s,
        )
        self.telemetry = TelemetryUplink(
            TelemetrySender(batch_size=config.telemetry_batch_size,
                            max_inflight=config.telemetry_max_inflight_batches,
                            ack_timeout_s=config.ack_timeout_s),
            self.link, self.topic(DeviceChannel.TELEMETRY), drop=self._drop, clock=clock)
        self._owned_small_io: Executor | None = None
        if small_io is None:
            small_io = self._owned_small_io = small_io_executor()
        # the update path (raises TrustedKeyError for an unreadable trusted key)
        self.updater = Updater(self, self.link, UpdateSettings.from_config(config),
                               small_io=small_io, clock=clock, pause=pause)
        # an experiment's candidate beside the served model (edge_agent/shadow.py); the keeper
        # verifies, downloads and loads it with the update path's gate and chunk transfer
        self.experiment: Experiment | None = None
        self.experiments = ExperimentKeeper(
            self, self.link, self.updater.gate, data_dir=config.data_dir,
            device_id=config.device_id, small_io=small_io, clock=clock,
            repair_interval_s=config.chunk_repair_interval_s,
            model_memory_bytes=config.model_memory_bytes,
            feedback_memory=config.feedback_memory, root=config.topic_root)
        self._experiment_due = time.monotonic() + config.metrics_window_s
        # agent self-update: only when a launcher started this agent and said where its slots are
        self.self_update: AgentSelfUpdate | None = None
        launcher_root = launcher_root_from_env()
        if launcher_root is not None:
            self.self_update = AgentSelfUpdate(
                self.link, device_id=self.device_id, data_dir=config.data_dir,
                launcher_root=launcher_root, running_version=self.agent_version,
                trusted_keys=load_trusted_keys(config.trusted_keys),
                device_class=config.device_class, clock=clock, report=self.report,
                repair_interval_s=config.chunk_repair_interval_s, use_url=config.artifact_http,
                root=config.topic_root, gate=self.updater.gate)
        self.messages = MessageRouter(
            self.device_id, root=config.topic_root, on_key_update=self.updater.on_key_update,
            model_chunks=(self.updater.on_chunk, self.experiments.on_chunk),
            agent_chunks=self.self_update, handlers=self._message_handlers(), drop=self._drop)

    # -- the update path's view (kept as attributes for the simulator, tests and status) -----

    @property
    def state(self) -> str:
        """The update state as reported (``active`` when at rest and serving)."""
        return self.updater.reported_state

    @property
    def last_error(self) -> str | None:
        return self.updater.last_error

    @property
    def target(self) -> Manifest | None:
        return self.updater.target_manifest

    @property
    def download(self) -> ArtifactDownload | None:
        return self.updater.download

    def serve(self, slot: Slot | None, runtime: InferenceRuntime | None, *,
              deployment_id: str | None = None) -> None:
        """Serve ``runtime`` (the model in ``slot``) from now on; None serves nothing.

        The switch is the one reference assignment to ``self.runtime``: a prediction in flight
        finishes on the runtime it read, the next one uses the new one.
        """
        self.runtime = runtime
        if slot is None or runtime is None:
            self.active = None
            self.deployment_id = deployment_id
            if self.health is not None:
                self._queue_window(self.health.switch(None, None, None))
            return
        self.active = slot.ref
        self.deployment_id = slot.deployment_id
        # the previous model's monitoring window closes here; the new model's starts
        self._queue_window(self.monitor.switch(slot.manifest, self._clock(), time.monotonic()))
        if self.health is not None:  # and the health window: each version's cost its own
            self._queue_window(self.health.switch(slot.ref.model, slot.ref.version,
                                                  getattr(runtime, "session_bytes", None)))

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, *, wait_connected: bool = True) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = open_outbox(self._outbox_path, max_records=self.config.outbox_max_records,
                                  overflow=OverflowPolicy(self.config.outbox_overflow),
                                  tag=str(int(self._clock())), device_id=self.device_id)
        self.updater.start()
        self.experiments.start()
        if self.self_update is not None:
            self._tasks.extend(self.self_update.tasks())
        if self.log_ring is not None:
            self.log_ring.attach()
        self._tasks.append(asyncio.create_task(self._telemetry_loop()))
        await self.link.start(wait=wait_connected)

    async def stop(self, *, drain_timeout: float = 0.0) -> None:
        """Stop cleanly: flush telemetry to disk, optionally wait until it is acknowledged."""
        if self._closed:
            return
        # the partial windows
        self._queue_window(self.monitor.roll(self._clock(), time.monotonic()))
        if self.health is not None:
            self._queue_window(self.health.roll())
        if self.experiment is not None:
            self.experiment.drain(timeout=1.0)
            self._queue_window(self.experiment.roll(self._clock()))
        self.flush()
        deadline = time.monotonic() + drain_timeout
        while drain_timeout and self.outbox and (self.outbox.stats().pending or
                                                 self._drops_unreported()) and \
                time.monotonic() < deadline:
            self._send_batches()
            await asyncio.sleep(0.05)
        if self.link.connected:
            with contextlib.suppress(Exception):
                await self.link.publish_and_wait(
                    self.topic(DeviceChannel.PRESENCE),
                    encode(Presence(online=False, ts=self._clock(),
                                    agent_version=self.agent_version,
                                    device_class=self.config.device_class)),
                    retain=True, timeout=2.0)
        await self.link.stop()
        self._close()

    def kill(self) -> None:
        """Stop as a crash would (for the simulator): no flush, no goodbye, last will fires."""
        self.link.kill()
        self._close()

    def _close(self) -> None:
        self._closed = True
        if self.log_ring is not None:
            self.log_ring.detach()
        for task in self._tasks:
            task.cancel()
        self.updater.close()
        self.experiments.close()
        if self.self_update is not None:
            self.self_update.close()
        if self._owned_small_io is not None:
            # a journal save still running finishes in its thread; nothing new is queued
            self._owned_small_io.shutdown(wait=False)
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None

    # -- inference ---------------------------------------------------------------------------

    def predict(self, features: Any, request_key: str | None = None) -> list[Prediction]:
        """Predict one row or a batch; raises NoActiveModel or InvalidInput.

        ``features`` is a row or a batch of numbers, or, for a model with an input schema,
        records of named fields (one object, a list of objects, or columns; see
        edgewise_wire/records.py), refused as a whole with every bad row named.
        ``request_key`` (the application's user or session id, say): during an A/B experiment split by request,
        which arm serves the call (a stable hash of it, so one key sticks to one arm); without
        one the served model answers. During a shadow experiment the answer is always the
        served model's: the candidate sees the rows after the answer is built.
        """
        runtime = self.runtime  # one read: a model switch mid-call cannot mix two models
        if runtime is None:
            raise NoActiveModel(f"device {self.device_id} has no active model yet")
        experiment = self.experiment
        if experiment is not None and experiment.mode == "ab" and \
                experiment.candidate is not None and (experiment.share >= 1.0 or (
                    request_key is not None and request_arm(
                        experiment.experiment_id, request_key, experiment.share) == "candidate")):
            try:
                return self._predict_on(experiment.candidate, features, None)
            except InvalidInput:
                raise
            except RuntimeError:
                # the candidate failed this call: counted against it, the served model answers
                experiment.observe_served("candidate", 1, 0.0, failed=True)
        return self._predict_on(runtime, features, experiment)

    def _predict_on(self, runtime: InferenceRuntime, features: Any,
                    experiment: Experiment | None) -> list[Prediction]:
        manifest = runtime.manifest
        try:
            rows = prepare_features(features, manifest)
        except InvalidInput:
            self._record_error("invalid_input")
            self.monitor.observe_error(1)
            raise
        health = self.health
        cpu_started = health.call_started() if health is not None else None
        started = time.perf_counter()
        try:
            out = runtime.run(rows)
        except Exception as exc:
            self._record_error("runtime_error")
            self.monitor.observe_error(len(rows))
            watch = self.updater.probation_for(manifest.artifact.sha256)
            if watch is not None:
                watch.observe_error(len(rows))
            raise RuntimeError(f"inference failed: {exc}") from exc
        latency_ms = (time.perf_counter() - started) * 1000.0
        if health is not None:
            health.call_ended(manifest.model, manifest.version, len(rows), latency_ms,
                              cpu_started)
        watch = self.updater.probation_for(manifest.artifact.sha256)
        if watch is not None:
            watch.observe(len(rows), latency_ms)
        per_row_ms = latency_ms / len(rows)
        if self.monitor.model == manifest.model and self.monitor.version == manifest.version:
            self.monitor.observe(monitor_rows(rows), out.labels, out.scores, latency_ms)
        labels = out.labels.tolist()
        scores = out.scores.tolist() if out.scores is not None else None
        n = len(labels)
        first = self._next_prediction
        self._next_prediction += n
        model, version = manifest.model, manifest.version
        # the probability of each predicted label, kept for the feedback's log loss and Brier
        top = out.scores.max(axis=1) if out.scores is not None else None
        self._recent.remember(first, labels, model, version, top)
        sample_rate = self.sample_share if self.sample_share is not None \
            else self.config.prediction_sample_rate
        if sample_rate >= 1.0:
            sampled: range | list[int] = range(n)
        else:
            draw = self._sampler.random
            sampled = [i for i in range(n) if draw() < sample_rate]
        if sampled:
            confidences = top.tolist() if top is not None else None
            self._pending_records.append(CallRecords(
                self._clock(), model, version, first, per_row_ms, labels, confidences, sampled,
                rows if self._columnar else None, sample_rate))
        prefix = self._boot_id + "-"
        self.predictions_served += n
        live = self.experiment
        if live is not None:
            if experiment is None:  # an A/B call the candidate served
                live.observe_served("candidate", n, latency_ms)
            elif live.mode == "shadow":  # after the answer: never changes it, never waits
                live.offer(first, rows, labels, latency_ms)
            else:
                live.observe_served("control", n, latency_ms)
        if scores is None:
            return [Prediction(f"{prefix}{first + i}", label, None, model, version, per_row_ms)
                    for i, label in enumerate(labels)]
        return [Prediction(f"{prefix}{first + i}", label, scores[i], model, version, per_row_ms)
                for i, label in enumerate(labels)]

    def feedback(self, prediction_id: str, label: Any) -> bool:
        """Record the true label of an earlier prediction; False if it is no longer known."""
        found = self._recent.find(prediction_id)
        known = found is not None
        record: dict[str, Any] = {"kind": "feedback", "ts": self._clock(),
                                  "prediction_id": prediction_id, "truth": label}
        if found is not None:
            (predicted, model, version), confidence = found
            record["predicted"] = predicted
            record["correct"] = bool(predicted == label)
            # the version that made the prediction, which may not be the one running now
            record["model"], record["version"] = model, version
            self.monitor.observe_feedback(model, version, predicted, label, confidence)
            experiment = self.experiment
            if experiment is not None:
                arm = "candidate" if (model, version) == experiment.candidate_ref else "control"
                number = int(prediction_id.rsplit("-", 1)[1])
                experiment.observe_label(number, arm, predicted, label)
        else:
            # a label for a prediction this agent does not know (any more): counted in the
            # window, so the controller sees labels going to waste
            self.monitor.observe_unmatched_feedback()
            if self.active is not None:
                record["model"] = self.active.model
                record["version"] = self.active.version
        self._pending_records.append(record)
        return known

    def unflushed_records(self) -> int:
        """Telemetry records still in memory (lost at a crash; written at the next flush)."""
        return sum(len(r.sampled) if isinstance(r, CallRecords) else 1
                   for r in self._pending_records)

    def _record_error(self, reason: str) -> None:
        self._pending_records.append({"kind": "error", "ts": self._clock(), "reason": reason})

    def queue_record(self, record: dict[str, Any]) -> None:
        """A record for the outbox with the next flush (an experiment's refusal)."""
        self._pending_records.append(record)

    def _queue_window(self, record: dict[str, Any] | None) -> None:
        """A closed monitoring window goes to the outbox with the next flush, like any record."""
        if record is not None:
            self._pending_records.append(record)

    # -- MQTT --------------------------------------------------------------------------------

    def topic(self, channel: DeviceChannel) -> str:
        return device_topic(self.device_id, channel, root=self.config.topic_root)

    def _on_connect(self) -> None:
        # the key update first: its retained copy then arrives before the retained desired state,
        # which a key it brings may have signed
        self.link.subscribe(self.messages.keys_topic)
        self.link.subscribe(self.topic(DeviceChannel.DESIRED))
        self.link.subscribe(self.topic(DeviceChannel.ACK))
        if self.self_update is not None:
            self.link.subscribe(self.topic(DeviceChannel.AGENT_DESIRED))
        if self.log_ring is not None:
            self.link.subscribe(self.topic(DeviceChannel.LOGS_REQUEST))
        self.link.subscribe(self.topic(DeviceChannel.EXPERIMENT))
        self.link.subscribe(self.topic(DeviceChannel.SAMPLING))
        self.link.publish(self.topic(DeviceChannel.PRESENCE),
                          encode(Presence(online=True, ts=self._clock(),
                                          agent_version=self.agent_version,
                                          device_class=self.config.device_class)), retain=True)
        self.report()
        self.telemetry.sender.reconnected()
        self.updater.on_connected()
        self.experiments.on_connected()
        if self.self_update is not None:
            self.self_update.on_connected()

    def _on_disconnect(self) -> None:
        log.info("%s: disconnected from %s", self.device_id, self.config.broker)

    def _drop(self, reason: str, detail: str) -> None:
        self.dropped_messages[reason] += 1
        log.warning("%s: dropped message (%s): %s", self.device_id, reason, detail)

    def _message_handlers(self) -> dict[DeviceChannel, Callable[[Any], None]]:
        """Who handles the messages of each device channel (the router decodes them)."""
        handlers: dict[DeviceChannel, Callable[[Any], None]] = {
            DeviceChannel.DESIRED: self.updater.on_desired,
            DeviceChannel.ACK: self._on_ack,
            DeviceChannel.LOGS_REQUEST: self._send_logs,
            DeviceChannel.EXPERIMENT: self.experiments.on_order,
            DeviceChannel.SAMPLING: self._on_sampling,
        }
        if self.self_update is not None:  # without a launcher, agent orders are not for us
            handlers[DeviceChannel.AGENT_DESIRED] = self.self_update.on_desired
        return handlers

    def _on_sampling(self, order: SamplingOrder) -> None:
        if order.share != self.sample_share:
            log.info("%s: prediction records kept: %s (%s)", self.device_id,
                     "local rate" if order.share is None else order.share,
                     order.selector or "controller")
        self.sample_share = order.share

    def _send_logs(self, request: LogsRequest) -> None:
        """Reply with the recent log lines asked for (qos 0: a lost reply is asked again)."""
        ring = self.log_ring
        if ring is None:
            return
        lines = ring.tail(request.since_ts, request.max_lines)
        self.link.publish(self.topic(DeviceChannel.LOGS),
                          encode(LogsReply(request.request_id, lines, ring.dropped)), qos=0)

    def report(self) -> None:
        if not self.link.connected:
            return
        update = self.updater.report_fields()
        deployment_id = update.deployment_id if update.deployment_id is not None \
            else self.deployment_id
        message = Reported(
            state=update.state, active=self.active, target=update.target,
            deployment_id=deployment_id, last_error=update.last_error,
            progress=update.progress, labels=self.config.labels, agent_version=self.agent_version,
            device_class=self.config.device_class, ts=self._clock(), staged=update.staged,
            previous=update.previous,
            agent_update=(self.self_update.report_fields()
                          if self.self_update is not None else None))
        self.link.publish(self.topic(DeviceChannel.REPORTED), encode(message), retain=True)
    # -- telemetry ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the telemetry held in memory to the outbox now (normally every flush interval)."""
        if not self._pending_records or self.outbox is None:
            return
        pending, self._pending_records = self._pending_records, []
        bodies = encode_pending(pending, self._boot_id, self._columnar)
        # overflow drops the oldest records not awaiting an ack
        try:
            self.outbox.append_encoded(bodies, in_flight=self.telemetry.sender.in_flight())
        except OutboxError as exc:
            # the outbox counted what it could not keep; it is reported with the next batch
            log.error("%s: telemetry not stored: %s", self.device_id, exc)

    def _send_batches(self) -> None:
        if self.outbox is not None:
            self.telemetry.send(self.outbox)

    def _drops_unreported(self) -> bool:
        outbox = self.outbox
        return outbox is not None and \
            self.telemetry.sender.drops_unreported(outbox.stats().dropped_total)

    @property
    def acks_refused(self) -> int:
        """Acks that deleted nothing because they did not name this outbox's epoch and a range
        (a gauge of every health sample, and in :meth:`status`)."""
        return (self.messages.malformed_acks + self.dropped_messages["ack_refused"]
                + self.dropped_messages["ack_other_epoch"])

    def _on_ack(self, ack: Ack) -> None:
        if self.outbox is not None:
            self.telemetry.on_ack(self.outbox, ack)

    async def _telemetry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.telemetry_flush_interval_s)
            try:
                if self.monitor.due(time.monotonic()):
                    self._queue_window(self.monitor.roll(self._clock(), time.monotonic()))
                if self.health is not None:
                    self._queue_window(self.health.tick())
                mono = time.monotonic()
                if mono >= self._experiment_due:
                    self._experiment_due = mono + self.config.metrics_window_s
                    if self.experiment is not None:
                        self._queue_window(self.experiment.roll(self._clock()))
                self.flush()
                self._send_batches()
            except Exception:
                log.exception("%s: telemetry loop error", self.device_id)

    def _health_gauges(self) -> dict[str, float]:
        """What only the agent knows for a health sample: its outbox and its link."""
        gauges: dict[str, float] = {}
        if self.outbox is not None:
            gauges["outbox_backlog"] = self.outbox.stats().pending
        # acks refused since start: without an epoch or a range, or for another epoch
        gauges["acks_refused"] = self.acks_refused
        if self.link.rtt_ms is not None:
            gauges["rtt_ms"] = self.link.rtt_ms
        return gauges

    # -- introspection -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        stats = self.outbox.stats() if self.outbox else None
        return {
            "device_id": self.device_id,
            "state": self.state,
            "active": str(self.active) if self.active else None,
            "last_error": self.last_error,
            "predictions_served": self.predictions_served,
            "outbox_pending": stats.pending if stats else None,
            "outbox_dropped": stats.dropped_total if stats else None,
            "outbox_epoch": self.outbox.epoch if self.outbox else None,
            "monitor": dict(self.monitor.stats),
            "dropped_messages": dict(self.dropped_messages),
            "acks_refused": self.acks_refused,
            "connected": self.link.connected,
            **self.updater.status(),
            "agent_update": (self.self_update.report_fields()
                             if self.self_update is not None else None),
        }
