"""The agent's side of monitoring with a real model: windows go to the outbox as ``metrics``
records and count every prediction whatever the raw sampling rate; acks for another outbox
epoch are ignored; a record that can never be sent is discarded as a counted drop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig
from edgewise_mqtt.link import BrokerAddress, MqttLink
from edgewise_wire import Ack, encode
from edgewise_wire.topics import DeviceChannel, device_topic
from simulator.broker import BrokerProcess, free_port
from simulator.workload import load_dataset
from tests.harness.telemetry import (
    install_model,
    iris_conversion,
    outbox_records,
    prediction_ids,
)
from tests.harness.waiting import wait_for_async

ROWS = load_dataset("iris").features


def offline_agent(tmp_path: Path, **overrides: float | bool) -> EdgeAgent:
    """An agent with iris:1 installed and no reachable broker (a closed port)."""
    data_dir = tmp_path / "dev"
    install_model(data_dir, iris_conversion())
    config = AgentConfig(device_id="mon-dev", data_dir=data_dir,
                         broker=BrokerAddress("127.0.0.1", free_port()), **overrides)  # type: ignore[arg-type]
    return EdgeAgent(config)


def test_sampled_raw_records_but_complete_window(tmp_path: Path) -> None:
    async def scenario() -> list[dict]:
        agent = offline_agent(tmp_path, prediction_sample_rate=0.0)
        await agent.start(wait_connected=False)
        predictions = [p for row in ROWS[:40] for p in agent.predict(row)]
        predictions += agent.predict(ROWS[40:60])  # one call, 20 rows
        for p in predictions[:30]:
            assert agent.feedback(p.prediction_id, (p.label + 1) % 3)  # all wrong
        await agent.stop()
        return outbox_records(agent.config.data_dir / "outbox.sqlite")

    records = asyncio.run(scenario())
    kinds = [r["kind"] for r in records]
    assert prediction_ids(records) == []  # sample rate 0: no raw prediction records
    assert "prediction" not in kinds and "predictions" not in kinds
    assert kinds.count("feedback") == 30
    (window,) = [r for r in records if r["kind"] == "metrics"]
    summary = window["summary"]
    assert (window["model"], window["version"]) == ("iris", 1)
    assert summary["count"] == 60  # ... but every prediction is in the window
    assert summary["latency"]["count"] == 41  # one latency observation per call
    assert summary["derived"]["score"]["n"] == 30
    assert summary["derived"]["score"]["accuracy"] == 0.0
    assert summary["derived"]["estimated_accuracy"]["is_estimate"] is True
    assert [f["name"] for f in summary["features"]] == list(load_dataset("iris").feature_names)
    assert "expected" not in summary["features"][0]  # the controller has the profile


@pytest.mark.parametrize("columnar", [True, False], ids=["columnar", "per-row"])
def test_windows_roll_on_time_and_add_up_to_every_prediction(tmp_path: Path,
                                                             columnar: bool) -> None:
    async def scenario() -> tuple[int, list[dict]]:
        agent = offline_agent(tmp_path, metrics_window_s=0.3, telemetry_flush_interval_s=0.05,
                              telemetry_columnar=columnar)
        await agent.start(wait_connected=False)
        served = 0
        for i in range(24):
            agent.predict(ROWS[i % len(ROWS)])
            served += 1
            await asyncio.sleep(0.05)
        await agent.stop()
        return served, outbox_records(agent.config.data_dir / "outbox.sqlite")

    served, records = asyncio.run(scenario())
    windows = [r["summary"] for r in records if r["kind"] == "metrics"]
    assert len(windows) >= 3
    assert sum(w["count"] for w in windows) == served
    for a, b in zip(windows, windows[1:], strict=False):  # contiguous, non-overlapping
        assert a["end_ts"] <= b["start_ts"] + 1e-6
    ids = prediction_ids(records)  # every prediction recorded once, in whichever form
    assert len(ids) == len(set(ids)) == served
    assert {r["kind"] for r in records} & {"prediction", "predictions"} == \
        {"predictions" if columnar else "prediction"}


def test_bad_sample_rate_is_refused_with_the_key_named(tmp_path: Path) -> None:
    from edge_agent.config import ConfigError

    with pytest.raises(ConfigError, match="prediction_sample_rate"):
        AgentConfig(device_id="x", data_dir=tmp_path, prediction_sample_rate=1.5)
    with pytest.raises(ConfigError, match="metrics_window_s"):
        AgentConfig(device_id="x", data_dir=tmp_path, metrics_window_s=0)


@pytest.mark.broker
def test_acks_for_another_epoch_are_ignored_and_undeliverable_records_dropped(
        tmp_path: Path, broker: BrokerProcess) -> None:
    async def scenario() -> None:
        data_dir = tmp_path / "dev"
        install_model(data_dir, iris_conversion())
        device = f"mon-epoch-{free_port()}"
        agent = EdgeAgent(AgentConfig(device_id=device, data_dir=data_dir,
                                      broker=broker.address, telemetry_flush_interval_s=0.05,
                                      ack_timeout_s=60))
        probe = MqttLink(f"probe-{device}", broker.address, on_message=lambda t, p: None)
        await agent.start()
        await probe.start()
        try:
            outbox = agent.outbox
            assert outbox is not None
            # a record the wire cannot carry (NaN is not JSON) must not block the rest
            outbox.append_many([{"kind": "error", "ts": 1.0, "reason": float("nan")}])
            agent.predict(np.asarray(ROWS[:5]))
            await wait_for_async(lambda: outbox.stats().dropped_total == 1, 10,
                             "the NaN record to be discarded")
            sender = agent.telemetry.sender
            await wait_for_async(lambda: sender.sent_upto >= outbox.stats().last_seq, 10,
                             "the later records to be sent")
            assert agent.dropped_messages["undeliverable_record"] == 1
            pending = outbox.stats().pending
            last = outbox.stats().last_seq
            ack_topic = device_topic(device, DeviceChannel.ACK)
            await probe.publish_and_wait(ack_topic, encode(Ack(1, last, epoch=outbox.epoch + 1)))
            await wait_for_async(lambda: agent.dropped_messages["ack_other_epoch"] == 1, 10,
                             "the foreign-epoch ack to be refused")
            assert outbox.stats().pending == pending  # nothing deleted
            await probe.publish_and_wait(ack_topic, encode(Ack(1, last, epoch=outbox.epoch)))
            await wait_for_async(lambda: outbox.stats().pending == 0, 10, "the ack to delete")
        finally:
            await probe.stop()
            await agent.stop()

    asyncio.run(scenario())
