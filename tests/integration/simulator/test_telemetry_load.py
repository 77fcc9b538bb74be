"""The telemetry load generator against a real controller: every record it makes is stored once
and acknowledged, under the device's epoch and gap-free seqs (what the ingest bench relies on)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa

from controller.cli.client import ControllerClient
from simulator.broker import BrokerProcess
from simulator.demo import start_controller, stop_process
from simulator.telemetry_load import LoadSpec, TelemetryLoad
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_generated_telemetry_is_stored_once_and_acknowledged(broker: BrokerProcess,
                                                             tmp_path: Path) -> None:
    proc, url = start_controller(tmp_path / "controller", broker)
    try:
        spec = LoadSpec(devices=60, predictions_per_s=4, flush_s=0.5, connections=4,
                        prefix="loadtest")

        async def scenario() -> TelemetryLoad:
            load = TelemetryLoad(broker.address, spec)
            await load.start()
            load.run()
            await wait_for_async(lambda: load.stats.records_produced >= 600, 30,
                                 "600 records produced")
            load.stop_producing()  # keep the links for the acks
            await wait_for_async(lambda: load.outstanding() == 0, 30,
                                 lambda: f"every ack ({load.outstanding()} records outstanding)")
            await load.stop()
            return load

        load = asyncio.run(scenario())
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'controller' / 'controller.sqlite'}")
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text(
                    "SELECT device_id, seq FROM telemetry WHERE device_id LIKE 'loadtest-%' "
                    "ORDER BY seq")).all()
        finally:
            engine.dispose()
        seqs: dict[str, list[int]] = defaultdict(list)
        for device_id, seq in rows:
            seqs[device_id].append(seq)
        for device in load.devices:
            assert seqs[device.device_id] == list(range(1, device.next_seq)), device.device_id
        assert len(rows) == load.stats.records_produced == load.stats.records_acked
        assert ControllerClient(url).health()["bridge"]["records_duplicate"] == 0
    finally:
        stop_process(proc)
