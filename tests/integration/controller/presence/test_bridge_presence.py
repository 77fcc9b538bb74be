"""The controller presence kept by the bridge on a real broker: its last will, the replicas of
one instance that keep it online, a clean stop, a foreign controller noticed, and the instance
id in the database."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from controller.app.presence import RootTaken, claim_root, instance_id, read_presence
from controller.fleet.bridge import ControllerBridge
from controller.fleet.store import FleetStore
from controller.fleet.telemetry_store import TelemetryStore
from controller.storage import migrator
from controller.storage.db import Database
from edgewise_mqtt.link import MqttLink
from edgewise_wire import ControllerPresence, encode
from edgewise_wire.topics import controller_presence_topic
from simulator.broker import BrokerProcess
from tests.harness.bridges import NoArtifacts

pytestmark = [pytest.mark.broker]


def _bridge(broker: BrokerProcess, db: Database, root: str,
            presence: ControllerPresence) -> ControllerBridge:
    return ControllerBridge(broker.address, FleetStore(db), TelemetryStore(db), NoArtifacts(),
                            root=root, presence=presence)


async def _until(broker: BrokerProcess, root: str, check: object,
                 timeout: float = 20.0) -> ControllerPresence | None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = await read_presence(broker.address, root, wait_s=1.0)
        if check(seen):  # type: ignore[operator]
            return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"the presence under {root} never matched; last: {seen}")


def test_the_instance_id_is_made_once_per_database(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "c.sqlite"))
    migrator.upgrade(db)
    first = instance_id(db)
    assert first.startswith("ctl-") and instance_id(db) == first
    other = Database(str(tmp_path / "other.sqlite"))
    migrator.upgrade(other)
    assert instance_id(other) != first
    db.dispose()
    other.dispose()


def test_replicas_keep_their_instance_online_until_the_last_one_stops(
        broker: BrokerProcess, tmp_path: Path) -> None:
    root = f"bridge-{os.urandom(3).hex()}/ew/v1"
    db = Database(str(tmp_path / "c.sqlite"))
    migrator.upgrade(db)
    me = ControllerPresence(instance_id(db), online=True, replica="r1", started_at=time.time())

    async def scenario() -> None:
        assert await read_presence(broker.address, root, wait_s=0.5) is None
        await claim_root(broker.address, root, me.instance, 0.5)  # a free root
        one = _bridge(broker, db, root, me)
        two = _bridge(broker, db, root, replace(me, replica="r2"))
        await one.start()
        await two.start()
        try:
            await _until(broker, root, lambda p: p is not None and p.online)
            await claim_root(broker.address, root, me.instance, 0.5)  # the same instance may
            killed_at = time.time()
            one.link.kill()  # as a crash: the broker publishes r1's last will (offline) ...
            seen = await _until(broker, root,
                                lambda p: p is not None and p.online and p.ts > killed_at)
            assert seen is not None and seen.replica == "r2"  # ... and r2 put it back online
            with pytest.raises(RootTaken, match=f"instance {me.instance}, replica r2"):
                await claim_root(broker.address, root, "ctl-someone-else", 0.5)
        finally:
            await one.stop()
            await two.stop()  # the last one stops cleanly: offline at once
        gone = await read_presence(broker.address, root, wait_s=1.0)
        assert gone is not None and not gone.online and gone.replica == "r2"
        await claim_root(broker.address, root, "ctl-someone-else", 0.5)  # free again

    asyncio.run(scenario())
    db.dispose()


def test_a_foreign_controller_on_the_root_is_noticed(broker: BrokerProcess,
                                                     tmp_path: Path) -> None:
    root = f"foreign-{os.urandom(3).hex()}/ew/v1"
    db = Database(str(tmp_path / "c.sqlite"))
    migrator.upgrade(db)
    me = ControllerPresence(instance_id(db), online=True, replica="r1", started_at=time.time())

    async def scenario() -> None:
        bridge = _bridge(broker, db, root, me)
        intruder = MqttLink(f"ew-test-intruder-{os.urandom(3).hex()}", broker.address,
                            on_message=lambda t, p: None)
        await bridge.start()
        await intruder.start()
        try:
            await _until(broker, root, lambda p: p is not None and p.instance == me.instance)
            # a controller that started within the check's window announces itself
            await intruder.publish_and_wait(
                controller_presence_topic(root=root),
                encode(ControllerPresence("ctl-intruder", online=True, replica="x")),
                retain=True)
            deadline = time.monotonic() + 10
            while bridge.stats["foreign_controller"] == 0:
                assert time.monotonic() < deadline, "the foreign presence went unnoticed"
                await asyncio.sleep(0.05)
        finally:
            await intruder.stop()
            await bridge.stop()

    asyncio.run(scenario())
    db.dispose()
