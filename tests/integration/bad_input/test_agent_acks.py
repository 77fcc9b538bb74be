"""Telemetry acks that do not name the agent's outbox epoch and a seq range delete nothing.

A real agent on a real broker, with no controller: a probe takes the controller's place, keeps
every batch the agent publishes and sends acks. An ack without an epoch (or with a null one,
without a range, or malformed) once deleted the unacknowledged records of every epoch; now each
is refused and counted (``acks_refused``, also a gauge of the agent's health records), the
records stay, and a proper ack afterwards delivers each of them exactly once.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig
from edgewise_mqtt.link import BrokerAddress, MqttLink
from edgewise_wire import Ack, TelemetryBatch, decode, encode
from edgewise_wire.topics import DeviceChannel, device_topic
from simulator.broker import BrokerProcess, free_port
from simulator.workload import load_dataset
from tests.harness.telemetry import install_model, iris_conversion
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker]

ROWS = load_dataset("iris").features


def _bad_acks(last: int, epoch: int) -> dict[str, bytes]:
    head = {"schema": 1, "type": "ack"}
    return {
        "no-epoch": json.dumps({**head, "first_seq": 1, "last_seq": last}).encode(),
        "null-epoch": json.dumps({**head, "first_seq": 1, "last_seq": last,
                                  "epoch": None}).encode(),
        "no-range": json.dumps({**head, "epoch": epoch}).encode(),
        "no-last": json.dumps({**head, "first_seq": 1, "epoch": epoch}).encode(),
        "string-epoch": json.dumps({**head, "first_seq": 1, "last_seq": last,
                                    "epoch": str(epoch)}).encode(),
        "other-epoch": encode(Ack(1, last, epoch + 1)),
        "garbage": b"\x00not an ack",
    }


def test_acks_without_epoch_or_range_are_refused_and_records_delivered_once(
        tmp_path: Path, broker: BrokerProcess) -> None:
    async def scenario() -> None:
        data_dir = tmp_path / "dev"
        install_model(data_dir, iris_conversion())
        device = f"ack-dev-{free_port()}"
        agent = EdgeAgent(AgentConfig(device_id=device, data_dir=data_dir,
                                      broker=BrokerAddress(broker.host, broker.port),
                                      telemetry_flush_interval_s=0.05, ack_timeout_s=600))
        batches: list[TelemetryBatch] = []
        probe = MqttLink(f"ack-probe-{device}", BrokerAddress(broker.host, broker.port),
                         on_message=lambda t, p: batches.append(decode(p, TelemetryBatch)))
        await probe.start()
        await probe.subscribe_and_wait(device_topic(device, DeviceChannel.TELEMETRY))
        await agent.start()
        try:
            outbox = agent.outbox
            assert outbox is not None
            agent.predict(np.asarray(ROWS[:20]))
            await wait_for_async(lambda: batches and max(b.last_seq for b in batches)
                                 >= outbox.stats().last_seq > 0, 20,
                                 "the records to be sent")
            pending = outbox.stats().pending
            last = outbox.stats().last_seq
            assert pending > 0
            ack_topic = device_topic(device, DeviceChannel.ACK)
            bad = _bad_acks(last, outbox.epoch)
            for payload in bad.values():
                await probe.publish_and_wait(ack_topic, payload)
            await wait_for_async(lambda: agent.acks_refused == len(bad), 10,
                                 "every bad ack to be refused and counted")
            assert agent.status()["acks_refused"] == len(bad)
            assert agent._health_gauges()["acks_refused"] == len(bad)
            assert outbox.stats().pending == pending, "a refused ack deleted records"
            assert outbox.stats().acked_total == 0
            # a proper ack for exactly what was sent deletes it
            await probe.publish_and_wait(ack_topic, encode(Ack(1, last, outbox.epoch)))
            await wait_for_async(lambda: outbox.stats().pending == 0, 10, "the ack to delete")
            assert outbox.stats().acked_total == pending
            # later records go too (the barrier: anything resent would have come before them)
            agent.predict(np.asarray(ROWS[20:25]))
            await wait_for_async(lambda: outbox.stats().last_seq > last, 10, "new records")
            newest = outbox.stats().last_seq
            await wait_for_async(lambda: max(b.last_seq for b in batches) >= newest, 20,
                                 "the new records to be sent")
            # exactly once: every record arrived, none twice, none resent after the bad acks
            seqs = Counter(r["seq"] for b in batches for r in b.records)
            assert sorted(seqs) == list(range(1, newest + 1))
            assert set(seqs.values()) == {1}, seqs
            assert {b.epoch for b in batches} == {outbox.epoch}
        finally:
            await agent.stop()
            await probe.stop()

    asyncio.run(scenario())
