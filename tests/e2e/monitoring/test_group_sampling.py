"""Per-group sampling on the devices, set from the controller, with a real broker, controller
process and agents: a group set to keep a tenth of its prediction records keeps about a tenth,
another group keeps every one, and the export's ``sample_share`` scales the counts back to what
the devices predicted. Cleared, the group keeps everything again."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from controller.app.cli import cli
from controller.cli.client import ControllerClient
from simulator.broker import BrokerProcess
from simulator.demo import start_controller, stop_process
from simulator.fleet import DeviceGroup, SimulatedFleet
from simulator.workload import load_dataset
from tests.harness.telemetry import iris_conversion
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker, pytest.mark.slow]

PER_DEVICE = 3000  # predictions per device, in calls of 100 rows
SHARE = 0.1


def run(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--controller", url, *args])


def test_a_group_keeps_its_share_and_the_export_scales_it_back(broker: BrokerProcess,
                                                               tmp_path: Path) -> None:
    ctl_dir = tmp_path / "controller"
    controller, url = start_controller(ctl_dir, broker)
    prefix = f"gs{uuid.uuid4().hex[:5]}"
    rows = np.asarray(load_dataset("iris").features, dtype=np.float32)
    try:
        client = ControllerClient(url)
        result = iris_conversion()
        client.push_version(result.manifest, result.artifact)
        r = run(url, "data", "sampling", "set", "--selector", "group=berlin", "--share",
                str(SHARE), "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["share"] == SHARE
        listed = run(url, "data", "sampling", "list", "--json")
        assert [(x["selector"], x["share"]) for x in json.loads(listed.output)] == \
            [("group=berlin", SHARE)]
        bad = run(url, "data", "sampling", "set", "--selector", "group=", "--share", "0.5")
        assert bad.exit_code != 0  # a selector that does not parse is refused, one line

        fleet = SimulatedFleet.from_groups(
            broker.address, [DeviceGroup("berlin", 2, {"group": "berlin"}),
                             DeviceGroup("munich", 2, {"group": "munich"})],
            tmp_path / "devices", prefix=prefix, health_sample_s=0,
            telemetry_flush_interval_s=0.1)
        berlin = [a for a in fleet.agents if "-berlin-" in a.device_id]
        munich = [a for a in fleet.agents if "-munich-" in a.device_id]

        async def predict_all() -> None:
            for agent in fleet.agents:
                for start in range(0, PER_DEVICE, 100):
                    agent.predict(rows[np.arange(start, start + 100) % len(rows)])
                agent.flush()
            assert await fleet.wait_drained(60)

        async def scenario() -> None:
            await fleet.start()
            try:
                ids = {a.device_id for a in fleet.agents}
                await wait_for_async(lambda: ids <= {d["device_id"] for d in
                                                     client.list_devices()},
                                     30, "the devices to register", in_thread=True)
                await asyncio.to_thread(client.deploy, "iris", 1, sorted(ids))
                assert await fleet.wait_for_version("iris", 1, timeout=60)
                await wait_for_async(lambda: all(a.sample_share == SHARE for a in berlin), 30,
                                     "berlin's devices to get their sampling order")
                assert all(a.sample_share is None for a in munich)
                await predict_all()
                # cleared: berlin's devices go back to their own rate (every record)
                r = run(url, "data", "sampling", "clear", "--selector", "group=berlin")
                assert r.exit_code == 0, r.output
                await wait_for_async(lambda: all(a.sample_share is None for a in berlin), 30,
                                     "berlin's devices to drop their sampling order")
                for agent in fleet.agents:
                    agent.predict(rows[:50])
                    agent.flush()
                assert await fleet.wait_drained(60)
            finally:
                await fleet.stop(drain_timeout=10)

        asyncio.run(scenario())
        out = tmp_path / "iris.parquet"
        r = run(url, "data", "export", "iris", "--out", str(out))
        assert r.exit_code == 0, r.output
        cleared = run(url, "data", "sampling", "list", "--json")
        assert json.loads(cleared.output) == []
    finally:
        stop_process(controller)

    table = pq.read_table(out).to_pydict()
    kept: dict[str, int] = {}
    estimate: dict[str, float] = {}
    for device, share in zip(table["device_id"], table["sample_share"], strict=True):
        kept[device] = kept.get(device, 0) + 1
        estimate[device] = estimate.get(device, 0.0) + 1.0 / share
    for agent in munich:  # every record, each standing for one prediction
        assert kept[agent.device_id] == PER_DEVICE + 50
        assert estimate[agent.device_id] == PER_DEVICE + 50
    for agent in berlin:
        shares = {s for d, s in zip(table["device_id"], table["sample_share"], strict=True)
                  if d == agent.device_id}
        assert shares == {SHARE, 1.0}  # sampled, then every record after the clear
        # about a tenth of 3000 (binomial: mean 300, sd 16), then all 50 after the clear
        assert 200 <= kept[agent.device_id] - 50 <= 400, kept[agent.device_id]
        # scaled by 1/share the records estimate what the device predicted
        assert abs(estimate[agent.device_id] - (PER_DEVICE + 50)) <= 0.35 * PER_DEVICE
    # over the group the estimate is closer (sd of the sum: ~230 predictions of 6000)
    group = sum(estimate[a.device_id] for a in berlin)
    assert abs(group - 2 * (PER_DEVICE + 50)) <= 0.2 * 2 * PER_DEVICE
