"""The controller's MQTT side: ingests what devices say, publishes what they should run.

Handlers run on the event loop and only parse (telemetry with msgspec, :mod:`.ingest_wire`);
database work happens in a worker thread fed by one queue, so a slow commit never stalls the MQTT
connection.

Group commit: the worker takes what waits in the queue, and waits a little for more (until
``group_records`` records or ``group_wait_s`` after the first message), and stores the telemetry
of all those messages in one transaction (:meth:`TelemetryStore.store_group`). Telemetry is
acknowledged only after that transaction committed: an ack that is lost makes the agent send
again, and the (device, epoch, seq) key makes the second copy a no-op. If the database refuses
the group for something in the data (not for being down), the group is stored message by
message, so one such message holds none of the others back. ``metrics`` records (window
summaries) are stored in the same transaction by the telemetry store, into the metrics table as
well. The queue holds at most ``max_queued_records`` telemetry records: past that, a batch is
shed (counted, left unacknowledged, so its agent sends it again), which bounds the controller's
memory when the database falls behind.

Topic root: every topic is under ``root`` (one fleet per root on a shared broker). With a
``presence`` (the controller's, :mod:`controller.app.presence`), the link's last will marks it
offline, every (re)connection publishes it online, retained, and a clean stop offline; when a
replica of the same instance (same database) stops or dies, the others publish it online again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from controller.errors import StorageError
from controller.fleet.chunk_server import ChunkServer
from controller.fleet.ingest_wire import DecodedBatch, decode_telemetry
from controller.fleet.store import FleetStore
from controller.fleet.telemetry_store import TelemetryStore
from edgewise_mqtt.link import BrokerAddress, MqttLink, Will
from edgewise_wire import (
    Ack,
    ControllerPresence,
    Desired,
    DesiredAgent,
    Manifest,
    Presence,
    ProtocolError,
    Reported,
    SamplingOrder,
    decode,
    encode,
)
from edgewise_wire.experiments import ExperimentOrder
from edgewise_wire.manifest import AgentManifest, ArtifactRef
from edgewise_wire.request_messages import ArtifactRequest
from edgewise_wire.topics import (
    ROOT,
    ChunkTopic,
    DeviceChannel,
    DeviceTopic,
    controller_presence_topic,
    device_topic,
    device_wildcard,
    parse_topic,
    shared,
)

log = logging.getLogger("edgewise.controller.bridge")

_STORE_ATTEMPTS = 30
# Telemetry records waiting for the storage worker, at most. Past it, a telemetry message is shed
# (counted, not acknowledged): its agent keeps it in its outbox and sends it again after its
# ack timeout (10 s by default). A controller that far behind would store the batch only after
# the agent had sent it again anyway, and an unbounded queue grew to 1.1 GiB in a 10,000-device
# run on a starved machine. 100,000 records is about ten seconds of the 10,000-device load.
MAX_QUEUED_RECORDS = 100_000
_SHED_LOG_INTERVAL_S = 10.0

# topics parsed and built once per device, not once per message: a fleet's devices each send
# and are acknowledged over and over. The bound keeps a flood of made-up ids from growing them
# (a few tens of MiB at most); a replica hearing from more devices than this gains nothing.
_TOPIC_CACHE = 65_536


@functools.lru_cache(maxsize=_TOPIC_CACHE)
def _parse(topic: str, root: str) -> DeviceTopic | ChunkTopic:
    return parse_topic(topic, root=root)


@functools.lru_cache(maxsize=_TOPIC_CACHE)
def _ack_topic(device_id: str, root: str) -> str:
    return device_topic(device_id, DeviceChannel.ACK, root=root)


_INGESTED = (DeviceChannel.REPORTED, DeviceChannel.PRESENCE, DeviceChannel.TELEMETRY,
             DeviceChannel.ARTIFACT_REQUEST)


@dataclass(frozen=True)
class _Work:
    device_id: str
    message: Presence | Reported | DecodedBatch
    received_at: float

    @property
    def records(self) -> int:
        """What the item weighs in a group: its records (a state update counts one)."""
        return self.message.records if isinstance(self.message, DecodedBatch) else 1


class ArtifactSource(Protocol):
    """Where the chunks devices download come from (the model registry, the agent bundles, and
    their artifact store): anything with the ``artifact`` its hash belongs to."""

    def find_by_sha(self, sha: str) -> Manifest | AgentManifest | None: ...

    def open_range(self, sha: str, offset: int, length: int) -> bytes: ...


class ControllerBridge:
    def __init__(
        self,
        broker: BrokerAddress,
        fleet: FleetStore,
        telemetry: TelemetryStore,
        artifacts: ArtifactSource,
        *,
        client_id: str | None = None,
        share_group: str | None = None,
        root: str = ROOT,
        presence: ControllerPresence | None = None,
        batch_limit: int = 1000,
        group_records: int = 5000,
        group_wait_s: float = 0.005,
        max_queued_records: int = MAX_QUEUED_RECORDS,
    ) -> None:
        self.fleet = fleet
        self.telemetry = telemetry
        self.artifacts = artifacts
        self.share_group = share_group
        self.root = root
        self.presence = presence
        self._presence_topic = controller_presence_topic(root=root)
        self._stopping = False
        self.stats: Counter[str] = Counter()
        self._batch_limit = batch_limit  # messages in one group at most
        self._group_records = group_records  # records in one group: no more are awaited
        self._group_wait_s = group_wait_s  # how long a group waits for more after its first
        self._queue: asyncio.Queue[_Work] | None = None
        self._max_queued_records = max_queued_records
        self._queued_records = 0  # records in the queue (a state update counts one)
        self._shed_logged_at = 0.0
        self._worker: asyncio.Task[None] | None = None
        # the last desired state and its encoding: a deployment sends one Desired to many
        # devices, and encoding its manifest costs ~2 ms (2 s for a thousand devices)
        self._encoded_desired: tuple[Desired, bytes] | None = None
        # (device id, payload) of every ``logs`` reply (device health's logs on demand); set
        # by whoever asks devices for logs
        self.logs_handler: Callable[[str, bytes], None] | None = None
        self.link = MqttLink(
            client_id or f"ew-controller-{os.getpid()}-{os.urandom(3).hex()}",
            broker,
            on_message=self._on_message,
            on_connect=self._on_connect,
            will=None if presence is None else Will(
                self._presence_topic, encode(replace(presence, online=False))),
            max_inflight=0,  # no window: an ack per telemetry message (MqttLink says why)
        )
        self.chunks = ChunkServer(self.link, artifacts.open_range, self._resolve_artifact,
                                  root=root)

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._work_loop())
        await self.link.start()

    async def stop(self) -> None:
        self._stopping = True
        await self.chunks.stop()
        if self._queue is not None:
            # finish what was received, so nothing acknowledged by the broker is forgotten
            for _ in range(100):
                if self._queue.empty():
                    break
                await asyncio.sleep(0.05)
        if self._worker is not None:
            self._worker.cancel()
        if self.presence is not None and self.link.connected:
            try:  # a clean stop: the broker will not send the last will
                await self.link.publish_and_wait(
                    self._presence_topic,
                    encode(replace(self.presence, online=False, ts=time.time())), retain=True,
                    timeout=2.0)
            except (TimeoutError, ConnectionError) as exc:
                log.warning("could not mark this controller offline on %s: %s",
                            self._presence_topic, exc)
        await self.link.stop()

    # -- outgoing --------------------------------------------------------------------------

    def publish_desired(self, device_id: str, desired: Desired) -> None:
        if desired.manifest is not None:
            self.chunks.offer(desired.manifest.artifact)
        cached = self._encoded_desired
        if cached is None or cached[0] is not desired:
            cached = self._encoded_desired = (desired, encode(desired))
        self.link.publish(device_topic(device_id, DeviceChannel.DESIRED, root=self.root),
                          cached[1],
                          retain=True)

    def publish_experiment(self, device_id: str, order: ExperimentOrder) -> None:
        """An experiment order, retained on the device's ``experiment`` topic; the candidate's
        chunks become servable like a rollout's."""
        if order.candidate is not None:
            self.chunks.offer(order.candidate.artifact)
        self.link.publish(device_topic(device_id, DeviceChannel.EXPERIMENT, root=self.root),
                          encode(order), retain=True)

    def publish_sampling(self, device_id: str, order: SamplingOrder) -> None:
        """The share of prediction records the device's group keeps (retained)."""
        self.link.publish(device_topic(device_id, DeviceChannel.SAMPLING, root=self.root),
                          encode(order), retain=True)

    def publish_desired_agent(self, device_id: str, desired: DesiredAgent) -> None:
        """The signed agent version a device's launcher should run (retained)."""
        self.link.publish(device_topic(device_id, DeviceChannel.AGENT_DESIRED, root=self.root),
                          encode(desired), retain=True)

    # -- incoming ----------------------------------------------------------------------------

    def _on_connect(self) -> None:
        if self.presence is not None:
            self._publish_presence()
            # never shared: every replica keeps its instance marked online
            self.link.subscribe(self._presence_topic)
        for channel in _INGESTED:
            topic = device_wildcard(channel, root=self.root)
            self.link.subscribe(shared(self.share_group, topic) if self.share_group else topic)
        if self.logs_handler is not None:
            # never shared: the replica that asked a device for its logs waits for the reply
            self.link.subscribe(device_wildcard(DeviceChannel.LOGS, root=self.root), qos=0)

    def _publish_presence(self) -> None:
        assert self.presence is not None
        self.link.publish(self._presence_topic,
                          encode(replace(self.presence, online=True, ts=time.time())),
                          retain=True)

    def _on_controller_presence(self, payload: bytes) -> None:
        """The retained controller presence changed: a replica of this instance that stopped
        or died marked the instance offline (mark it online again); another instance online
        means a second controller started on this root within the start-up check's window."""
        if self.presence is None or self._stopping:
            return
        try:
            seen = decode(payload, ControllerPresence) if payload else None
        except ProtocolError as exc:
            self._drop("malformed", f"{self._presence_topic}: {exc}")
            return
        if seen is None or (seen.instance == self.presence.instance and not seen.online):
            self._publish_presence()
        elif seen.instance != self.presence.instance and seen.online:
            self.stats["foreign_controller"] += 1
            log.error("another controller (instance %s, replica %s) announced itself under "
                      "topic root %r, which this controller (instance %s) runs: two fleets "
                      "now share these devices; stop one of them", seen.instance,
                      seen.replica or "?", self.root, self.presence.instance)

    def _drop(self, reason: str, detail: str) -> None:
        self.stats[f"dropped_{reason}"] += 1
        log.warning("dropped message (%s): %s", reason, detail)

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == self._presence_topic:
            self._on_controller_presence(payload)
            return
        try:
            parsed = _parse(topic, self.root)
            if not isinstance(parsed, DeviceTopic):
                self._drop("unexpected_topic", topic)
                return
            message: Any
            channel = parsed.channel
            if channel is DeviceChannel.ARTIFACT_REQUEST:
                self.chunks.handle_request(parsed.device_id, decode(payload, ArtifactRequest))
                return
            if channel is DeviceChannel.LOGS and self.logs_handler is not None:
                self.logs_handler(parsed.device_id, payload)
                return
            if channel is DeviceChannel.TELEMETRY:
                now = time.time()
                message = decode_telemetry(payload, parsed.device_id, now)
                if self._queued_records + message.records > self._max_queued_records \
                        and self._queued_records > 0:
                    self._shed(message, now)
                    return
                if message.rejected:
                    self._count_bad_records(message)
                self._enqueue(_Work(parsed.device_id, message, now))
                return
            elif channel is DeviceChannel.REPORTED:
                message = decode(payload, Reported)
            elif channel is DeviceChannel.PRESENCE:
                if not payload:
                    return  # a cleared retained message
                message = decode(payload, Presence)
            else:
                self._drop("unexpected_topic", topic)
                return
        except ProtocolError as exc:
            self._drop("malformed", f"{topic}: {exc}")
            return
        self._enqueue(_Work(parsed.device_id, message, time.time()))

    def _enqueue(self, item: _Work) -> None:
        assert self._queue is not None
        self._queue.put_nowait(item)
        self._queued_records += item.records

    def _shed(self, batch: DecodedBatch, now: float) -> None:
        """Too much waits for the database: leave this batch unacknowledged, so its agent
        sends it again after its ack timeout; counted, and logged at most every 10 s."""
        self.stats["shed_messages"] += 1
        self.stats["shed_records"] += batch.records
        if now - self._shed_logged_at >= _SHED_LOG_INTERVAL_S:
            self._shed_logged_at = now
            log.warning("storage is behind (%d records wait, at most %d): telemetry is left "
                        "unacknowledged for the agents to send again (%d messages so far, "
                        "shed_messages in /metrics)", self._queued_records,
                        self._max_queued_records, self.stats["shed_messages"])

    def _count_bad_records(self, batch: DecodedBatch) -> None:
        """Bad records of a batch whose other records are stored: counted and logged; the
        batch is acknowledged with them (sending them again would not make them good)."""
        self.stats["dropped_bad_records"] += len(batch.rejected)
        log.warning("telemetry from %s (epoch %d, seqs %d..%d): %d bad records left out, %d "
                    "stored: %s", batch.device_id, batch.epoch, batch.first_seq, batch.last_seq,
                    len(batch.rejected), len(batch.rows), "; ".join(batch.rejected[:3]))

    async def _gather(self) -> list[_Work]:
        """The next group: what waits in the queue, and what arrives within ``group_wait_s``
        of the first message, up to ``batch_limit`` messages or ``group_records`` records.

        One sleep to the deadline, then what came meanwhile: a ``wait_for`` per arriving
        message (a task and a timer each) cost more of the event loop than the message's own
        decoding. A full group does not wait."""
        assert self._queue is not None
        first = await self._queue.get()
        self._queued_records -= first.records
        items = [first]
        weight = self._take_waiting(items, first.records)
        if len(items) < self._batch_limit and weight < self._group_records:
            await asyncio.sleep(self._group_wait_s)
            self._take_waiting(items, weight)
        return items

    def _take_waiting(self, items: list[_Work], weight: int) -> int:
        """Move what waits in the queue into ``items`` while the group has room; returns the
        group's weight in records."""
        assert self._queue is not None
        queue = self._queue
        while len(items) < self._batch_limit and weight < self._group_records \
                and not queue.empty():
            item = queue.get_nowait()
            self._queued_records -= item.records
            items.append(item)
            weight += item.records
        return weight

    async def _work_loop(self) -> None:
        assert self._queue is not None
        while True:
            items = await self._gather()
            acks: list[tuple[str, Ack]] = []
            for attempt in range(1, _STORE_ATTEMPTS + 1):
                try:
                    acks = await asyncio.to_thread(self._store, items)
                    break
                except Exception:
                    # the database is down or refused: keep the items and try again; nothing
                    # is acknowledged meanwhile, so agents keep their telemetry too
                    log.exception("storing %d messages failed (attempt %d of %d)", len(items),
                                  attempt, _STORE_ATTEMPTS)
                    self.stats["store_failures"] += 1
                    await asyncio.sleep(1.0)
            else:
                # unacknowledged telemetry is sent again by the agents; state updates come again
                # with the next report
                self.stats["dropped_store_failed"] += len(items)
            for device_id, ack in acks:
                self.link.publish(_ack_topic(device_id, self.root), encode(ack))

    def _store(self, items: list[_Work]) -> list[tuple[str, Ack]]:
        """Runs in a worker thread: commit, then return the acks to send."""
        batches: list[DecodedBatch] = []
        for item in items:
            message = item.message
            if isinstance(message, DecodedBatch):
                batches.append(message)
                continue
            try:
                if isinstance(message, Reported):
                    self.fleet.set_reported(item.device_id, message)
                elif isinstance(message, Presence):
                    self.fleet.set_presence(item.device_id, message.online, message.ts,
                                            message.agent_version, message.device_class)
            except StorageError:
                raise  # the database itself: the whole round is retried
            except Exception as exc:
                # this one message can never be stored; the others in the round still are
                self.stats["dropped_invalid"] += 1
                log.warning("dropped %s from %s: %s", type(message).__name__, item.device_id, exc)
        if not batches:
            return []
        stored = self._store_telemetry(batches)
        # the epoch goes back too: an agent ignores acks for an outbox it replaced
        return [(b.device_id, Ack(b.first_seq, b.last_seq, b.epoch)) for b in stored]

    def _store_telemetry(self, batches: list[DecodedBatch]) -> list[DecodedBatch]:
        """One transaction for the group; if the database refuses its data, one per batch.
        Returns the batches committed (to acknowledge)."""
        stored = batches
        try:
            inserted = self.telemetry.store_group(batches)
        except StorageError:
            raise  # the database itself: the whole round is retried
        except Exception as exc:
            log.warning("a group of %d telemetry batches was refused (%s); storing them one "
                        "by one", len(batches), exc)
            self.stats["groups_split"] += 1
            inserted, stored = 0, []
            for b in batches:
                try:
                    inserted += self.telemetry.store_group([b])
                except StorageError:
                    raise
                except Exception as one:
                    # this batch can never be stored; the others in the group still are
                    self.stats["dropped_invalid"] += 1
                    log.warning("dropped telemetry from %s: %s", b.device_id, one)
                    continue
                stored.append(b)
        rows = sum(len(b.rows) for b in stored)
        self.stats["records_stored"] += inserted
        self.stats["records_duplicate"] += rows - inserted
        self.stats["batches"] += len(stored)
        self.stats["groups"] += 1
        return stored

    def _resolve_artifact(self, sha256: str) -> ArtifactRef | None:
        manifest = self.artifacts.find_by_sha(sha256)
        return manifest.artifact if manifest is not None else None
