"""Telemetry from many device identities over few MQTT connections: load for the controller.

A real agent per device costs the simulator its memory and an outbox file each; ten thousand of
them do not fit beside a controller on a small machine. What the controller's ingest sees is
only the wire, so this generator produces exactly that: for every virtual device, ``telemetry``
messages on its own topic ``{root}/dev/{id}/telemetry`` (the agent's wire format, built with
:mod:`edgewise_wire`), with an outbox epoch per device and gap-free increasing seqs, and it
listens on each device's ``ack`` topic like an agent. Each device sends like the agent's sender
(edge_agent/telemetry/sender.py, default settings): at most ``max_inflight`` batches of at most
``batch_size`` records out at once, the rest waiting (as in the outbox) for an ack to free the
window; a window unacknowledged for ``ack_timeout_s`` is sent again, so a controller that falls
behind sees the duplicates and the growing batches a real fleet would send it.

Records are prediction records as the agent writes them (model, version, a prediction id made
of a boot id and a counter, latency, label, confidence) and, for a share of the predictions,
feedback records with the true label. Devices are spread over ``connections`` MQTT connections
(a broker without per-device ACLs lets one connection publish for many topics); their flushes
are spread evenly over the flush interval, as independent devices' would be.

The generator counts what it produced, sent, had acknowledged and has outstanding
(:class:`LoadStats`); ``outstanding`` growing over a steady run is a controller falling behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgewise_mqtt.link import BrokerAddress, MqttLink
from edgewise_wire import Ack, ProtocolError, TelemetryBatch, decode, encode
from edgewise_wire.telemetry_messages import MAX_EPOCH
from edgewise_wire.topics import ROOT, DeviceChannel, DeviceTopic, device_topic, parse_topic

SUBSCRIBE_TOPICS_PER_PACKET = 200


@dataclass
class VirtualDevice:
    device_id: str
    epoch: int
    boot_id: str
    phase: float  # seconds into the flush interval at which this device flushes
    next_seq: int = 1
    predictions: int = 0
    carry: float = 0.0  # fractional predictions not yet made
    waiting: list[tuple[float, int]] = field(default_factory=list)  # (ts, predictions) unsent
    waiting_records: int = 0  # predictions waiting (feedback records are added when sent)
    # first_seq -> (last_seq, payload, sent at, records)
    unacked: dict[int, tuple[int, bytes, float, int]] = field(default_factory=dict)


@dataclass
class LoadStats:
    records_produced: int = 0
    messages_sent: int = 0
    messages_resent: int = 0
    records_acked: int = 0
    acks: int = 0
    acks_unknown: int = 0  # for a batch already acknowledged (a duplicate's second ack)
    publish_refused: int = 0  # paho refused to queue (not connected): sent again later

    def outstanding(self, devices: list[VirtualDevice]) -> int:
        """Records made that no ack has covered yet (in flight or waiting to be sent)."""
        return sum(d.waiting_records + sum(r for (_, _, _, r) in d.unacked.values())
                   for d in devices)


@dataclass(frozen=True)
class LoadSpec:
    devices: int = 10_000
    predictions_per_s: float = 1.0  # per device
    flush_s: float = 5.0  # a device sends what it has every flush_s seconds
    feedback_share: float = 0.1  # share of predictions whose true label comes back
    connections: int = 20
    ack_timeout_s: float = 10.0  # the agent's defaults
    batch_size: int = 500
    max_inflight: int = 4
    prefix: str = "load"
    model: str = "digits-mlp"
    version: int = 3
    topic_root: str = ROOT  # the fleet's topic root (the controller's topic_root)


def prediction_records(device: VirtualDevice, n: int, ts: float, spec: LoadSpec,
                       rng: random.Random,
                       records: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """``n`` prediction records (and some feedback records) as the agent writes them."""
    records = [] if records is None else records
    for _ in range(n):
        number = device.predictions
        device.predictions += 1
        label = rng.randrange(10)
        prediction_id = f"{device.boot_id}-{number}"
        records.append({"kind": "prediction", "ts": ts, "model": spec.model,
                        "version": spec.version, "prediction_id": prediction_id,
                        "latency_ms": round(0.15 + rng.random() * 0.1, 4), "label": label,
                        "confidence": round(0.5 + rng.random() / 2, 4)})
        if rng.random() < spec.feedback_share:
            truth = label if rng.random() < 0.9 else (label + 1) % 10
            records.append({"kind": "feedback", "ts": ts, "prediction_id": prediction_id,
                            "truth": truth, "predicted": label, "correct": truth == label,
                            "model": spec.model, "version": spec.version})
    return records


class TelemetryLoad:
    def __init__(self, broker: BrokerAddress, spec: LoadSpec, *, seed: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        self.broker = broker
        self.spec = spec
        self.clock = clock
        self.rng = random.Random(seed)
        self.stats = LoadStats()
        run = os.urandom(3).hex()
        self.devices = [
            VirtualDevice(f"{spec.prefix}-{i:05d}", self.rng.randrange(1, MAX_EPOCH),
                          f"{run}{i:05d}", spec.flush_s * i / spec.devices)
            for i in range(spec.devices)]
        self._by_id = {d.device_id: d for d in self.devices}
        count = max(1, min(spec.connections, spec.devices))
        self._groups: list[list[VirtualDevice]] = [self.devices[k::count] for k in range(count)]
        self.links: list[MqttLink] = []
        self._task: asyncio.Task[None] | None = None
        self.running = False
        self.producing = False

    # -- connections ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect every link and subscribe every device's ack topic (wait for the SUBACKs)."""
        self._subscribed: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        for k, group in enumerate(self._groups):
            done: asyncio.Future[None] = loop.create_future()
            self._subscribed.append(done)
            hook: list[Callable[[], None]] = []

            def on_connect(hook: list[Callable[[], None]] = hook) -> None:
                hook[0]()

            link = MqttLink(f"ew-load-{os.getpid()}-{k}", self.broker, on_message=self._on_message,
                            on_connect=on_connect, max_inflight=0)
            hook.append(self._subscriber(link, group, done))
            self.links.append(link)
        await asyncio.gather(*(link.start(timeout=30) for link in self.links))
        await asyncio.wait_for(asyncio.gather(*self._subscribed), 120)

    def _subscriber(self, link: MqttLink, group: list[VirtualDevice],
                    done: asyncio.Future[None]) -> Callable[[], None]:
        topics = [device_topic(d.device_id, DeviceChannel.ACK, root=self.spec.topic_root)
                  for d in group]

        def subscribe_all() -> None:
            client = link.client
            mids: set[int] = set()
            for i in range(0, len(topics), SUBSCRIBE_TOPICS_PER_PACKET):
                _, mid = client.subscribe([(t, 1) for t in topics[i:i + SUBSCRIBE_TOPICS_PER_PACKET]])
                if mid is not None:
                    mids.add(mid)
            previous: Any = client.on_subscribe

            def on_subscribe(c: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
                mids.discard(mid)
                if not mids and not done.done():
                    done.set_result(None)
                if previous is not None:
                    previous(c, userdata, mid, reasons, props)

            client.on_subscribe = on_subscribe

        return subscribe_all

    def stop_producing(self) -> None:
        """Make no more predictions; keep sending what waits, and resending, until acked."""
        self.producing = False

    async def stop(self) -> None:
        self.running = self.producing = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*(link.stop() for link in self.links), return_exceptions=True)

    # -- producing -----------------------------------------------------------------------

    def run(self) -> None:
        """Start producing on the running loop (until :meth:`stop_producing` or :meth:`stop`)."""
        self.running = self.producing = True
        self._task = asyncio.get_running_loop().create_task(self._produce())

    async def _produce(self) -> None:
        spec = self.spec
        tick = min(0.05, spec.flush_s / 10)
        start = time.monotonic()
        last_flush = {d.device_id: start for d in self.devices}
        # devices in the order of their phase: each tick flushes those whose moment came
        order = sorted(self.devices, key=lambda d: d.phase)
        cursor, cycle = 0, 0
        last_resend_check = start
        while self.running:
            now = time.monotonic()
            elapsed = now - start
            while self.running:
                device = order[cursor]
                due = cycle * spec.flush_s + device.phase
                if due > elapsed:
                    break
                self._flush(device, now - last_flush[device.device_id])
                last_flush[device.device_id] = now
                cursor += 1
                if cursor == len(order):
                    cursor, cycle = 0, cycle + 1
            if now - last_resend_check >= 1.0:
                last_resend_check = now
                self._resend_overdue(now)
            await asyncio.sleep(tick)

    def _link_of(self, device: VirtualDevice) -> MqttLink:
        return self.links[int(device.device_id.rsplit("-", 1)[1]) % len(self.links)]

    def _flush(self, device: VirtualDevice, seconds: float) -> None:
        """The predictions of the last ``seconds`` join the waiting ones; send what fits."""
        wanted = device.carry + seconds * self.spec.predictions_per_s if self.producing else 0.0
        n = int(wanted)
        device.carry = wanted - n
        if n:
            device.waiting.append((self.clock(), n))
            device.waiting_records += n
            self.stats.records_produced += n
        self._send_window(device)

    def _send_window(self, device: VirtualDevice) -> None:
        spec = self.spec
        while device.waiting and len(device.unacked) < spec.max_inflight:
            records: list[dict[str, Any]] = []
            predictions = 0
            # up to batch_size predictions (their feedback records ride along, as in the agent's
            # outbox the two kinds interleave)
            while device.waiting and predictions < spec.batch_size:
                ts, n = device.waiting[0]
                take = min(n, spec.batch_size - predictions)
                before = len(records)
                prediction_records(device, take, ts, spec, self.rng, records)
                self.stats.records_produced += len(records) - before - take  # the feedback
                predictions += take
                if take == n:
                    device.waiting.pop(0)
                else:
                    device.waiting[0] = (ts, n - take)
            device.waiting_records -= predictions
            first = device.next_seq
            for i, record in enumerate(records):
                record["seq"] = first + i
            last = first + len(records) - 1
            device.next_seq = last + 1
            payload = encode(TelemetryBatch(first, last, records, epoch=device.epoch))
            device.unacked[first] = (last, payload, time.monotonic(), len(records))
            self._send(device, payload)
            self.stats.messages_sent += 1

    def _send(self, device: VirtualDevice, payload: bytes) -> None:
        rc = self._link_of(device).publish(
            device_topic(device.device_id, DeviceChannel.TELEMETRY, root=self.spec.topic_root),
            payload, qos=1)
        if rc != 0:
            self.stats.publish_refused += 1

    def _resend_overdue(self, now: float) -> None:
        """A window with a batch unacknowledged for ack_timeout_s goes out again, oldest first."""
        timeout = self.spec.ack_timeout_s
        for device in self.devices:
            unacked = device.unacked
            if not unacked or not any(now - sent > timeout for (_, _, sent, _) in unacked.values()):
                continue
            for first in sorted(unacked):
                last, payload, _, records = unacked[first]
                unacked[first] = (last, payload, now, records)
                self._send(device, payload)
                self.stats.messages_resent += 1

    # -- acknowledgements ----------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        parsed = parse_topic(topic, root=self.spec.topic_root)
        if not isinstance(parsed, DeviceTopic) or parsed.channel is not DeviceChannel.ACK:
            return
        device = self._by_id.get(parsed.device_id)
        if device is None:
            return
        try:
            ack = decode(payload, Ack)
        except ProtocolError:
            return
        if ack.epoch is not None and ack.epoch != device.epoch:
            return
        entry = device.unacked.get(ack.first_seq)
        if entry is None or entry[0] != ack.last_seq:
            self.stats.acks_unknown += 1
            return
        del device.unacked[ack.first_seq]
        self.stats.acks += 1
        self.stats.records_acked += entry[3]
        if self.running:
            self._send_window(device)

    def outstanding(self) -> int:
        return self.stats.outstanding(self.devices)
