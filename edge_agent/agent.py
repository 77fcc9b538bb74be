"""The edge agent: follows its desired model, serves predictions, forwards telemetry.

One ``EdgeAgent`` is one device. It runs on an asyncio loop it does not own, so the daemon runs
one per process and the simulator runs a thousand on one loop, with the same code.

Update path: desired state (retained) -> subscribe to the artifact's chunk topic -> ask for the
missing ranges -> verify every chunk -> verify the whole artifact -> load -> smoke test -> switch.
A failure anywhere leaves the previous model serving and is reported in words.

Telemetry path: ``predict()`` appends records to an in-memory list (the prediction path does no
disk I/O); every ``telemetry_flush_interval_s`` they go to the SQLite outbox in one transaction;
batches leave the outbox in order and are deleted only when the controller acknowledges them.

Monitoring (issue 6): every call also feeds the active model's monitoring window
(:class:`~edge_agent.model_monitor.ModelMonitor`); every ``metrics_window_s`` the window summary
goes to the outbox as a ``metrics`` record. Raw prediction records are sampled at
``prediction_sample_rate``; the window summaries count every prediction. Batches carry the
outbox's epoch, and acks for another epoch (an outbox this agent replaced) are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent import __version__
from edge_agent.config import AgentConfig
from edge_agent.download import ArtifactDownload
from edge_agent.model_monitor import ModelMonitor
from edge_agent.mqtt_link import MqttLink, Will
from edge_agent.outbox import (
    OutboxCorruptError,
    OutboxError,
    OverflowPolicy,
    TelemetryOutbox,
    move_aside,
)
from edge_agent.protocol import (
    Ack,
    Desired,
    Manifest,
    ModelRef,
    Presence,
    ProtocolError,
    Reported,
    TelemetryBatch,
    decode,
    encode,
)
from edge_agent.protocol.errors import PayloadTooLarge
from edge_agent.protocol.messages import ArtifactRequest
from edge_agent.protocol.topics import (
    ChunkTopic,
    DeviceChannel,
    DeviceTopic,
    chunk_wildcard,
    device_topic,
    parse_topic,
)
from edge_agent.runtime import (
    InferenceRuntime,
    InvalidInput,
    file_sha256,
    load_runtime,
    prepare_features,
    smoke_test,
)

log = logging.getLogger("edgewise.agent")

SUPPORTED_FORMATS = ("onnx", "tflite")


class NoActiveModel(RuntimeError):
    """The device has no verified model yet; predictions are refused, not guessed."""


@dataclass(frozen=True)
class Prediction:
    prediction_id: str
    label: Any
    scores: list[float] | None
    model: str
    version: int
    latency_ms: float


class EdgeAgent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.device_id = config.device_id
        root = config.data_dir
        self._models_dir = root / "models"
        self._download_dir = root / "download"
        self._active_file = root / "active.json"
        self._outbox_path = root / "outbox.sqlite"
        self.runtime: InferenceRuntime | None = None
        self.active: ModelRef | None = None
        self.state = "idle"
        self.last_error: str | None = None
        self.target: Manifest | None = None
        self.deployment_id: str | None = None
        self.download: ArtifactDownload | None = None
        self.outbox: TelemetryOutbox | None = None
        self.dropped_messages: Counter[str] = Counter()
        self.predictions_served = 0
        self._pending_records: list[dict[str, Any]] = []
        self._recent: OrderedDict[str, Any] = OrderedDict()
        # first seq -> (last seq, when sent, the dropped_total the batch carried)
        self._inflight: dict[int, tuple[int, float, int]] = {}
        self._dropped_reported = 0  # the highest dropped_total the controller acknowledged
        self._sent_upto = 0
        self._boot_id = os.urandom(4).hex()
        self._next_prediction = 0
        self._last_chunk_at = 0.0
        self._last_progress_report = 0.0
        self._tasks: list[asyncio.Task[Any]] = []
        self._update_task: asyncio.Task[None] | None = None
        self._closed = False
        # -- monitoring (issue 6)
        self.monitor = ModelMonitor(config.metrics_window_s, config.device_id)
        self._sampler = random.Random()
        self.link = MqttLink(
            f"ew-agent-{self.device_id}",
            config.broker,
            on_message=self._on_message,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            will=Will(self._topic(DeviceChannel.PRESENCE),
                      encode(Presence(online=False, agent_version=__version__))),
            keepalive=config.keepalive_s,
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, *, wait_connected: bool = True) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = self._open_outbox()
        self._load_active()
        self._tasks.append(asyncio.create_task(self._telemetry_loop()))
        self._tasks.append(asyncio.create_task(self._repair_loop()))
        await self.link.start(wait=wait_connected)

    async def stop(self, *, drain_timeout: float = 0.0) -> None:
        """Stop cleanly: flush telemetry to disk, optionally wait until it is acknowledged."""
        if self._closed:
            return
        self._queue_window(self.monitor.roll(time.time(), time.monotonic()))  # the partial window
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
                    self._topic(DeviceChannel.PRESENCE),
                    encode(Presence(online=False, agent_version=__version__)), retain=True,
                    timeout=2.0)
        await self.link.stop()
        self._close()

    def kill(self) -> None:
        """Stop as a crash would (for the simulator): no flush, no goodbye, last will fires."""
        self.link.kill()
        self._close()

    def _close(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        if self._update_task:
            self._update_task.cancel()
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None

    def _open_outbox(self) -> TelemetryOutbox:
        policy = OverflowPolicy(self.config.outbox_overflow)
        try:
            return TelemetryOutbox(self._outbox_path, max_records=self.config.outbox_max_records,
                                   overflow=policy)
        except OutboxCorruptError as exc:
            # A corrupt outbox must not keep the device from serving: keep it (with its WAL)
            # for inspection and start an empty one. Other errors (locked, permissions) are
            # not corruption and are raised.
            aside = move_aside(self._outbox_path)
            log.error("%s: outbox corrupt (%s); moved to %s", self.device_id, exc, aside)
            return TelemetryOutbox(self._outbox_path, max_records=self.config.outbox_max_records,
                                   overflow=policy)

    def _load_active(self) -> None:
        if not self._active_file.exists():
            return
        try:
            record = json.loads(self._active_file.read_text())
            manifest = Manifest.from_dict(record["manifest"])
            path = self._models_dir / record["file"]
            if file_sha256(path) != manifest.artifact.sha256:
                raise ValueError(f"{path.name} no longer matches its sha256")
            self.runtime = load_runtime(path, manifest)
        except Exception as exc:
            self.state = "failed"
            self.last_error = f"the active model could not be loaded at start: {exc}"
            log.error("%s: %s", self.device_id, self.last_error)
            return
        self.active = ModelRef(manifest.model, manifest.version, manifest.artifact.sha256)
        self.deployment_id = record.get("deployment_id")
        self.state = "active"
        self._queue_window(self.monitor.switch(manifest, time.time(), time.monotonic()))

    # -- inference ---------------------------------------------------------------------------

    def predict(self, features: Any) -> list[Prediction]:
        """Predict one row or a batch; raises NoActiveModel or InvalidInput."""
        runtime = self.runtime  # one read: a model switch mid-call cannot mix two models
        if runtime is None:
            raise NoActiveModel(f"device {self.device_id} has no active model yet")
        manifest = runtime.manifest
        try:
            rows = prepare_features(features, manifest)
        except InvalidInput:
            self._record_error("invalid_input")
            self.monitor.observe_error(1)
            raise
        started = time.perf_counter()
        try:
            out = runtime.run(rows)
        except Exception as exc:
            self._record_error("runtime_error")
            self.monitor.observe_error(len(rows))
            raise RuntimeError(f"inference failed: {exc}") from exc
        latency_ms = (time.perf_counter() - started) * 1000.0
        per_row_ms = latency_ms / len(rows)
        if self.monitor.model == manifest.model and self.monitor.version == manifest.version:
            self.monitor.observe(rows, out.labels, out.scores, latency_ms)
        sample_rate = self.config.prediction_sample_rate
        labels = out.labels.tolist()
        scores = out.scores.tolist() if out.scores is not None else None
        confidences = out.scores.max(axis=1).tolist() if out.scores is not None else None
        now = time.time()
        results = []
        for i, label in enumerate(labels):
            pid = f"{self._boot_id}-{self._next_prediction}"
            self._next_prediction += 1
            self._remember(pid, (label, manifest.model, manifest.version))
            if sample_rate >= 1.0 or self._sampler.random() < sample_rate:
                record: dict[str, Any] = {
                    "kind": "prediction", "ts": now, "model": manifest.model,
                    "version": manifest.version, "prediction_id": pid,
                    "latency_ms": per_row_ms, "label": label,
                }
                if confidences is not None:
                    record["confidence"] = confidences[i]
                self._pending_records.append(record)
            results.append(Prediction(pid, label, scores[i] if scores else None, manifest.model,
                                      manifest.version, per_row_ms))
        self.predictions_served += len(results)
        return results

    def feedback(self, prediction_id: str, label: Any) -> bool:
        """Record the true label of an earlier prediction; False if it is no longer known."""
        remembered = self._recent.get(prediction_id, _UNKNOWN)
        known = remembered is not _UNKNOWN
        record: dict[str, Any] = {"kind": "feedback", "ts": time.time(),
                                  "prediction_id": prediction_id, "truth": label}
        if known:
            predicted, model, version = remembered
            record["predicted"] = predicted
            record["correct"] = bool(predicted == label)
            # the version that made the prediction, which may not be the one running now
            record["model"], record["version"] = model, version
            self.monitor.observe_feedback(model, version, predicted, label)
        elif self.active is not None:
            record["model"] = self.active.model
            record["version"] = self.active.version
        self._pending_records.append(record)
        return known

    def _remember(self, pid: str, prediction: tuple[Any, str, int]) -> None:
        self._recent[pid] = prediction  # (label, model, version)
        if len(self._recent) > self.config.feedback_memory:
            self._recent.popitem(last=False)

    def _record_error(self, reason: str) -> None:
        self._pending_records.append({"kind": "error", "ts": time.time(), "reason": reason})

    def _queue_window(self, record: dict[str, Any] | None) -> None:
        """A closed monitoring window goes to the outbox with the next flush, like any record."""
        if record is not None:
            self._pending_records.append(record)

    # -- MQTT --------------------------------------------------------------------------------

    def _topic(self, channel: DeviceChannel) -> str:
        return device_topic(self.device_id, channel)

    def _on_connect(self) -> None:
        self.link.subscribe(self._topic(DeviceChannel.DESIRED))
        self.link.subscribe(self._topic(DeviceChannel.ACK))
        self.link.publish(self._topic(DeviceChannel.PRESENCE),
                          encode(Presence(online=True, agent_version=__version__)), retain=True)
        self._report()
        # unacknowledged batches may have been lost with the connection: send them again
        self._inflight.clear()
        self._sent_upto = 0
        if self.download is not None and not self.download.complete:
            self._request_missing()

    def _on_disconnect(self) -> None:
        log.info("%s: disconnected from %s", self.device_id, self.config.broker)

    def _drop(self, reason: str, detail: str) -> None:
        self.dropped_messages[reason] += 1
        log.warning("%s: dropped message (%s): %s", self.device_id, reason, detail)

    def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            parsed = parse_topic(topic)
            if isinstance(parsed, ChunkTopic):
                self._on_chunk(parsed, payload)
            elif isinstance(parsed, DeviceTopic) and parsed.device_id == self.device_id:
                if parsed.channel is DeviceChannel.DESIRED:
                    self._on_desired(decode(payload, Desired))
                elif parsed.channel is DeviceChannel.ACK:
                    self._on_ack(decode(payload, Ack))
                else:
                    self._drop("unexpected_topic", topic)
            else:
                self._drop("unexpected_topic", topic)
        except ProtocolError as exc:
            self._drop("malformed", f"{topic}: {exc}")

    def _on_desired(self, desired: Desired) -> None:
        manifest = desired.manifest
        if manifest is None:
            self._deactivate(desired.deployment_id)
            return
        sha = manifest.artifact.sha256
        if self.active is not None and self.active.sha256 == sha:
            # back to the model that runs (a rollout's revert): an update in flight is dropped,
            # or it would switch to the version the controller just withdrew
            self._cancel_update()
            if self.state != "active":
                self.state, self.target, self.last_error = "active", None, None
                self._report()
            return
        if self.target is not None and self.target.artifact.sha256 == sha:
            return  # the retained desired state again (reconnect): the update goes on
        self._cancel_update()  # a newer target replaces the one being installed
        self.target = manifest
        self.deployment_id = desired.deployment_id
        self.last_error = None
        if manifest.format not in SUPPORTED_FORMATS:
            self._fail(f"model format {manifest.format!r} is not supported by this agent")
            return
        limit = self.config.max_model_bytes
        if limit is not None and manifest.artifact.size > limit:
            self._fail(f"model {manifest.model}:{manifest.version} is {manifest.artifact.size} "
                       f"bytes, more than this device takes (max_model_bytes = {limit})")
            return
        self._clean_partials(keep=sha)
        self.download = ArtifactDownload(manifest.artifact, self._download_dir / f"{sha}.part")
        self.state = "downloading"
        self._last_chunk_at = time.monotonic()
        self._report()
        log.info("%s: updating to %s:%s (%d bytes)", self.device_id, manifest.model,
                 manifest.version, manifest.artifact.size)
        if self.download.complete:
            self._update_task = asyncio.create_task(self._finish_update())
        elif self.link.connected:
            self._request_missing()

    def _cancel_update(self) -> None:
        """Stop the update in progress, if any; the active model keeps serving."""
        if self._update_task is not None and not self._update_task.done():
            self._update_task.cancel()
        if self.download is not None:
            if self.link.connected:
                self.link.unsubscribe(chunk_wildcard(self.download.ref.sha256))
            self.download = None

    def _deactivate(self, deployment_id: str) -> None:
        """The desired state names no model (a rollout reverting a device that ran none):
        stop any update, unload the model and forget it across restarts; serve nothing."""
        self._cancel_update()
        if self.active is None and self.target is None and self.state == "idle":
            return  # already so: the retained message again
        unloaded = self.active
        self._active_file.unlink(missing_ok=True)
        self.runtime = None  # predictions are refused from now on (NoActiveModel)
        self.active, self.target = None, None
        self.state, self.last_error = "idle", None
        self.deployment_id = deployment_id
        log.info("%s: desired state names no model; %s", self.device_id,
                 f"{unloaded} unloaded" if unloaded else "nothing to unload")
        self._report()

    def _request_missing(self) -> None:
        download = self.download
        if download is None or not self.link.connected:
            return
        asyncio.create_task(self._subscribe_and_request(download))

    async def _subscribe_and_request(self, download: ArtifactDownload) -> None:
        sha = download.ref.sha256
        try:
            # chunks published before the broker confirms the subscription would be missed
            await self.link.subscribe_and_wait(chunk_wildcard(sha))
        except (TimeoutError, ConnectionError, PermissionError) as exc:
            log.warning("%s: cannot subscribe to chunks of %s: %s", self.device_id, sha[:12], exc)
            return
        ranges = download.missing_ranges()
        if ranges and self.download is download:
            self.link.publish(self._topic(DeviceChannel.ARTIFACT_REQUEST),
                              encode(ArtifactRequest(sha, tuple(ranges))))

    def _on_chunk(self, chunk: ChunkTopic, payload: bytes) -> None:
        download = self.download
        if download is None or download.ref.sha256 != chunk.sha256:
            return  # a broadcast for another device's update, or one already finished
        if not download.accept(chunk.index, payload):
            return
        self._last_chunk_at = time.monotonic()
        if download.complete:
            self.link.unsubscribe(chunk_wildcard(chunk.sha256))
            self._update_task = asyncio.create_task(self._finish_update())
        elif time.monotonic() - self._last_progress_report > 1.0:
            self._last_progress_report = time.monotonic()
            self._report()

    async def _finish_update(self) -> None:
        download, manifest = self.download, self.target
        assert download is not None and manifest is not None
        suffix = "onnx" if manifest.format == "onnx" else "tflite"
        try:
            self.state = "verifying"
            self._report()
            path = await asyncio.to_thread(
                download.finalize, self._models_dir / f"{manifest.artifact.sha256}.{suffix}")
            self.download = None
            self.state = "activating"
            self._report()
            runtime = await asyncio.to_thread(load_runtime, path, manifest)
            await asyncio.to_thread(smoke_test, runtime)
            # in a thread: its fsync would stall every agent sharing the loop (the simulator)
            await asyncio.to_thread(self._write_active, manifest, path)
            self.runtime = runtime  # the switch: a single reference assignment
            previous = self.active
            self.active = ModelRef(manifest.model, manifest.version, manifest.artifact.sha256)
            self.state, self.target = "active", None
            # the previous model's window closes here; the new model's starts
            self._queue_window(self.monitor.switch(manifest, time.time(), time.monotonic()))
            self._prune_models(keep={path.name})
            log.info("%s: now running %s (was %s)", self.device_id, self.active, previous)
            self._report()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.download = None
            download.discard()
            # a verified file that failed to load or to pass its smoke test must not linger in
            # models/, where pruning would keep it instead of the model to roll back to
            bad = self._models_dir / f"{manifest.artifact.sha256}.{suffix}"
            if self.active is None or self.active.sha256 != manifest.artifact.sha256:
                bad.unlink(missing_ok=True)
            self._fail(str(exc))

    def _fail(self, reason: str) -> None:
        self.state = "failed"
        self.last_error = reason
        log.error("%s: update to %s failed: %s (still running %s)", self.device_id,
                  self.target.model if self.target else "?", reason, self.active)
        self._report()

    def _write_active(self, manifest: Manifest, path: Path) -> None:
        record = {"manifest": manifest.to_dict(), "file": path.name,
                  "deployment_id": self.deployment_id}
        tmp = self._active_file.with_suffix(".tmp")
        with tmp.open("w") as f:
            f.write(json.dumps(record))  # dumps uses the C encoder; dump(f) does not
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._active_file)

    def _prune_models(self, keep: set[str]) -> None:
        # keep the new model and the one before it (for a quick rollback); remove older ones
        files = sorted(self._models_dir.glob("*"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[2:]:
            if old.name not in keep:
                old.unlink(missing_ok=True)

    def _clean_partials(self, keep: str) -> None:
        if self._download_dir.exists():
            for part in self._download_dir.glob("*.part"):
                if not part.name.startswith(keep):
                    part.unlink(missing_ok=True)

    def _report(self) -> None:
        if not self.link.connected:
            return
        target = None
        if self.target is not None:
            target = ModelRef(self.target.model, self.target.version, self.target.artifact.sha256)
        progress = None
        if self.download is not None:
            progress = (self.download.received, self.download.ref.chunk_count)
        message = Reported(
            state=self.state, active=self.active, target=target,
            deployment_id=self.deployment_id, last_error=self.last_error, progress=progress,
            labels=self.config.labels, agent_version=__version__)
        self.link.publish(self._topic(DeviceChannel.REPORTED), encode(message), retain=True)

    # -- telemetry ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the telemetry held in memory to the outbox now (normally every flush interval)."""
        if not self._pending_records or self.outbox is None:
            return
        records, self._pending_records = self._pending_records, []
        # overflow drops the oldest records not awaiting an ack: a record dropped after it was
        # sent could reach the controller and be stored *and* counted as dropped
        in_flight = (min(self._inflight), self._sent_upto) if self._inflight else None
        try:
            self.outbox.append_many(records, in_flight=in_flight)
        except OutboxError as exc:
            # the outbox counted what it could not keep; it is reported with the next batch
            log.error("%s: telemetry not stored: %s", self.device_id, exc)

    def _send_batches(self) -> None:
        outbox = self.outbox
        if outbox is None or not self.link.connected:
            return
        now = time.monotonic()
        if any(now - sent > self.config.ack_timeout_s for _, sent, _ in self._inflight.values()):
            self._inflight.clear()  # unacknowledged for too long: send from the oldest again
            self._sent_upto = 0
        stats = outbox.stats()
        if stats.pending == 0 and not self._inflight and self._drops_unreported():
            self._report_drops(outbox, now)
            return
        if stats.pending == 0 or stats.last_seq <= self._sent_upto:
            return  # nothing unsent: skip the query (a thousand agents run this every 0.2 s)
        while len(self._inflight) < self.config.telemetry_max_inflight_batches:
            records = outbox.next_batch(self.config.telemetry_batch_size, after_seq=self._sent_upto)
            if not records:
                return
            payload, records = self._encode_batch(outbox, records)
            if payload is None:
                continue  # an undeliverable record was discarded (and counted): read on
            first, last = records[0]["seq"], records[-1]["seq"]
            if self.link.publish(self._topic(DeviceChannel.TELEMETRY), payload) != 0:
                return
            self._inflight[first] = (last, now, outbox.stats().dropped_total)
            self._sent_upto = last

    def _drops_unreported(self) -> bool:
        outbox = self.outbox
        return outbox is not None and outbox.stats().dropped_total > self._dropped_reported

    def _report_drops(self, outbox: TelemetryOutbox, now: float) -> None:
        """Tell the controller about drops that no later batch would carry (the outbox is empty):
        an empty batch at the last seq, which is acknowledged like any other. Its ack cannot
        delete anything: that seq was acknowledged already and seqs are never reused."""
        stats = outbox.stats()
        if stats.last_seq < 1:
            return  # nothing was ever stored (a full disk from the start): the next batch says it
        batch = TelemetryBatch(stats.last_seq, stats.last_seq, [], stats.dropped_total,
                               epoch=outbox.epoch)
        if self.link.publish(self._topic(DeviceChannel.TELEMETRY), encode(batch)) == 0:
            self._inflight[stats.last_seq] = (stats.last_seq, now, stats.dropped_total)

    def _encode_batch(self, outbox: TelemetryOutbox, records: list[dict[str, Any]]
                      ) -> tuple[bytes | None, list[dict[str, Any]]]:
        """Encode a batch, halving it while it is too large for one message. A single record
        that cannot be sent at all (too large, or not valid JSON such as a NaN) is discarded
        from the outbox as a counted drop instead of blocking every later record."""
        while True:
            batch = TelemetryBatch(records[0]["seq"], records[-1]["seq"], records,
                                   outbox.stats().dropped_total, epoch=outbox.epoch)
            try:
                return encode(batch), records
            except (PayloadTooLarge, ValueError) as exc:
                if len(records) > 1:
                    records = records[:len(records) // 2]
                    continue
                seq = records[0]["seq"]
                outbox.discard(seq, seq)
                self._drop("undeliverable_record",
                           f"telemetry record seq {seq} cannot be sent ({exc}); discarded, "
                           "counted in dropped_total")
                return None, records

    def _on_ack(self, ack: Ack) -> None:
        if self.outbox is None:
            return
        if ack.epoch is not None and ack.epoch != self.outbox.epoch:
            # for an outbox this agent replaced: its seqs are not this outbox's
            self._drop("ack_other_epoch", f"ack {ack.first_seq}..{ack.last_seq} of epoch "
                                          f"{ack.epoch}, outbox epoch is {self.outbox.epoch}")
            return
        self.outbox.ack(ack.first_seq, ack.last_seq)
        entry = self._inflight.get(ack.first_seq)
        # an ack for a shorter batch with the same first seq (sent before a reconnect, delivered
        # late) must not untrack the longer one in flight now: its records would then never be
        # sent again while the link stays up (seen in the simulator after a broker restart)
        if entry is not None and entry[0] <= ack.last_seq:
            del self._inflight[ack.first_seq]
            self._dropped_reported = max(self._dropped_reported, entry[2])
        self._send_batches()

    async def _telemetry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.telemetry_flush_interval_s)
            try:
                if self.monitor.due(time.monotonic()):
                    self._queue_window(self.monitor.roll(time.time(), time.monotonic()))
                self.flush()
                self._send_batches()
            except Exception:
                log.exception("%s: telemetry loop error", self.device_id)

    async def _repair_loop(self) -> None:
        interval = self.config.chunk_repair_interval_s
        while True:
            await asyncio.sleep(interval / 2)
            download = self.download
            if download is None or download.complete or not self.link.connected:
                continue
            if time.monotonic() - self._last_chunk_at > interval:
                self._last_chunk_at = time.monotonic()
                log.info("%s: no chunk for %.1fs, asking again for %d missing ranges",
                         self.device_id, interval, len(download.missing_ranges()))
                self._request_missing()

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
            "connected": self.link.connected,
        }


_UNKNOWN = object()
