"""The bridge's telemetry ingest over a real broker: group commit, acks after it, bad records
left out and counted while the good ones of their batch are stored and acknowledged."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from controller.fleet.bridge import ControllerBridge
from controller.fleet.store import FleetStore
from controller.fleet.telemetry_store import TelemetryStore
from controller.storage import migrator
from controller.storage.db import Database
from edgewise_wire import Ack, TelemetryBatch, decode, encode
from simulator.broker import BrokerProcess
from tests.harness.bridges import NoArtifacts
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker]


class Probe:
    def __init__(self, broker: BrokerProcess, root: str = "ew/v1") -> None:
        self.root = root
        self.acks: queue.Queue[tuple[str, Ack]] = queue.Queue()
        done = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"ew-test-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda c, u, m: self.acks.put(
            (m.topic.split("/")[-2], decode(bytes(m.payload), Ack)))
        self.client.on_subscribe = lambda *a: done.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(f"{root}/dev/+/ack", qos=1)
        assert done.wait(10)

    def publish(self, device: str, payload: bytes) -> None:
        self.client.publish(f"{self.root}/dev/{device}/telemetry", payload, qos=1).wait_for_publish(10)

    def got(self) -> list[tuple[str, Ack]]:
        out = []
        while not self.acks.empty():
            out.append(self.acks.get_nowait())
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def rec(seq: int) -> dict[str, Any]:
    return {"seq": seq, "kind": "prediction", "ts": 1.0, "model": "m", "version": 1,
            "prediction_id": f"p{seq}", "label": 0}


def test_bad_record_is_counted_and_the_rest_stored_and_acknowledged(
        broker: BrokerProcess, tmp_path: Path) -> None:
    db = Database(str(tmp_path / "c.db"))
    migrator.upgrade(db)
    tel = TelemetryStore(db)
    bridge = ControllerBridge(broker.address, FleetStore(db), tel, NoArtifacts())
    probe = Probe(broker)
    device = f"bi-{uuid.uuid4().hex[:6]}"
    body = json.loads(encode(TelemetryBatch(1, 4, [rec(1), rec(2), rec(3), rec(4)], epoch=3)))
    body["records"][2]["kind"] = "no-such-kind"
    acks: list[tuple[str, Ack]] = []

    async def scenario() -> None:
        await bridge.start()
        try:
            await wait_for_async(lambda: bridge.link.connected, 10, "the bridge connected")

            for _ in range(3):  # the bridge's subscription may still be on its way
                probe.publish(device, json.dumps(body).encode())
                try:
                    await wait_for_async(lambda: acks.extend(probe.got()) or bool(acks), 3,
                                         "the ack")
                    break
                except AssertionError:
                    continue
        finally:
            await bridge.stop()

    try:
        asyncio.run(scenario())
        assert acks and acks[0][0] == device
        assert (acks[0][1].first_seq, acks[0][1].last_seq, acks[0][1].epoch) == (1, 4, 3)
        assert tel.keys(device) == [(3, 1), (3, 2), (3, 4)]
        assert bridge.stats["dropped_bad_records"] == len(acks)  # one per delivery
        assert bridge.stats["dropped_malformed"] == 0
    finally:
        probe.close()
        db.dispose()


def test_many_messages_share_a_transaction(broker: BrokerProcess, tmp_path: Path) -> None:
    """A burst of batches from many devices is stored in fewer transactions than messages,
    and every batch is acknowledged once its group committed."""
    db = Database(str(tmp_path / "c.db"))
    migrator.upgrade(db)
    tel = TelemetryStore(db)
    bridge = ControllerBridge(broker.address, FleetStore(db), tel, NoArtifacts(),
                              group_wait_s=0.2)
    probe = Probe(broker)
    prefix = f"bg{uuid.uuid4().hex[:5]}"
    devices = [f"{prefix}-{i}" for i in range(40)]
    acked: set[str] = set()

    async def scenario() -> None:
        await bridge.start()
        try:
            await wait_for_async(lambda: bridge.link.connected, 10, "the bridge connected")

            def all_acked() -> bool:
                acked.update(d for d, _ in probe.got())
                return acked >= set(devices)

            for _ in range(5):
                for d in devices:
                    if d not in acked:
                        probe.publish(d, encode(TelemetryBatch(1, 5, [rec(s) for s in
                                                                      range(1, 6)])))
                try:
                    await wait_for_async(all_acked, 5, "every batch acknowledged")
                    break
                except AssertionError:
                    continue
        finally:
            await bridge.stop()

    try:
        asyncio.run(scenario())
        assert acked >= set(devices)
        assert all(tel.seqs(d) == [1, 2, 3, 4, 5] for d in devices)
        assert bridge.stats["groups"] < bridge.stats["batches"]
    finally:
        probe.close()
        db.dispose()


class _HeldStore(TelemetryStore):
    """A telemetry store whose first group waits until the test lets it go: the database as
    seen from a controller that has fallen behind."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.entered = threading.Event()
        self.release = threading.Event()

    def store_group(self, batches: Any) -> int:
        self.entered.set()
        assert self.release.wait(60), "the test never released the store"
        return int(super().store_group(batches))


def test_telemetry_past_the_queue_bound_is_shed_unacknowledged_and_stored_when_sent_again(
        broker: BrokerProcess, tmp_path: Path) -> None:
    db = Database(str(tmp_path / "c.db"))
    migrator.upgrade(db)
    tel = _HeldStore(db)
    # a topic root of its own: the bound is 10 records, and the shared broker carries other
    # tests' retained states and telemetry, which would count against it
    root = f"shed-{uuid.uuid4().hex[:6]}/ew/v1"
    bridge = ControllerBridge(broker.address, FleetStore(db), tel, NoArtifacts(),
                              max_queued_records=10, root=root)
    probe = Probe(broker, root)
    device = f"shed-{uuid.uuid4().hex[:6]}"

    def batch(first: int) -> bytes:
        return encode(TelemetryBatch(first, first + 4, [rec(s) for s in range(first, first + 5)],
                                     epoch=1))

    acked: list[tuple[int, int]] = []

    def take_acks() -> None:
        acked.extend((a.first_seq, a.last_seq) for _, a in probe.got())

    async def scenario() -> None:
        await bridge.start()
        try:
            await wait_for_async(lambda: bridge.link.connected, 10, "the bridge connected")
            for _ in range(5):  # the bridge's subscription may still be on its way
                probe.publish(device, batch(1))
                if await asyncio.to_thread(tel.entered.wait, 10):
                    break
            assert tel.entered.is_set(), "the first batch never reached the store"
            for first in (6, 11, 16):  # 5 + 5 records wait; the third batch would make 15
                probe.publish(device, batch(first))
            await wait_for_async(lambda: bridge.stats["shed_messages"] == 1, 10,
                                 "the batch past the bound shed")
            assert bridge.stats["shed_records"] == 5
            tel.release.set()
            await wait_for_async(lambda: take_acks() or len(acked) >= 3, 10,
                                 "the queued batches acknowledged")
            assert sorted(acked) == [(1, 5), (6, 10), (11, 15)]
            assert tel.seqs(device) == list(range(1, 16))
            # the agent sends the shed batch again after its ack timeout: now it is stored
            probe.publish(device, batch(16))
            await wait_for_async(lambda: take_acks() or len(acked) >= 4, 10,
                                 "the batch sent again acknowledged")
        finally:
            tel.release.set()
            await bridge.stop()

    try:
        asyncio.run(scenario())
        assert sorted(acked) == [(1, 5), (6, 10), (11, 15), (16, 20)]
        assert tel.seqs(device) == list(range(1, 21))
        assert bridge.stats["shed_messages"] == 1
    finally:
        probe.close()
        db.dispose()
