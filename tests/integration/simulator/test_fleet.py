"""Simulator helpers: the open-file limit, process sampling, groups, kill and restart."""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path

import pytest

from simulator.broker import BrokerProcess
from simulator.fleet import (
    DeviceGroup,
    FleetError,
    SimulatedFleet,
    raise_open_file_limit,
    sample_process,
)


def test_the_open_file_limit_is_raised_to_what_the_fleet_needs() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
        limit = raise_open_file_limit(200)
        assert limit >= 200 * 6
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 200 * 6
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_fleet_beyond_the_hard_limit_is_refused_with_what_to_do() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit on open files here")
    with pytest.raises(FleetError, match="ulimit -Hn"):
        raise_open_file_limit(hard)


def test_process_samples_measure_this_process() -> None:
    a = sample_process()
    sum(i * i for i in range(300_000))
    b = sample_process()
    assert 5 < a.rss_mib < 10_000 and a.fds > 0
    assert b.cpu_s >= a.cpu_s and b.at > a.at
    assert b.cpu_percent_since(a) >= 0


def test_groups_name_devices_and_carry_labels_and_settings(tmp_path: Path) -> None:
    from edgewise_mqtt.link import BrokerAddress

    fleet = SimulatedFleet.from_groups(
        BrokerAddress("127.0.0.1", 1), [
            DeviceGroup("north", 2, {"site": "n"}, "pi5", {"telemetry_batch_size": 7}),
            DeviceGroup("south", 1, {"site": "s"})],
        tmp_path, prefix="t", broker_for=lambda d: BrokerAddress("127.0.0.1", 2)
        if d.endswith("0001") else BrokerAddress("127.0.0.1", 1))
    assert [a.device_id for a in fleet.agents] == ["t-north-0000", "t-north-0001", "t-south-0000"]
    north = fleet.agent("t-north-0001")
    assert north.config.labels == {"site": "n"} and north.config.device_class == "pi5"
    assert north.config.telemetry_batch_size == 7 and north.config.broker.port == 2
    assert fleet.agent("t-south-0000").config.telemetry_batch_size != 7
    with pytest.raises(KeyError, match="no simulated device"):
        fleet.agent("nope")


def test_the_fleet_gives_every_agent_its_clock_and_one_small_io_pool(tmp_path: Path) -> None:
    from edgewise_mqtt.link import BrokerAddress

    fleet = SimulatedFleet(BrokerAddress("127.0.0.1", 1), 3, tmp_path, prefix="c",
                           clock=lambda: 1_000.0)
    pools = {id(a.updater.small_io) for a in fleet.agents}
    assert pools == {id(fleet.small_io)}
    for agent in fleet.agents:
        assert agent.feedback("nobody-0", 1) is False
        assert agent.unflushed_records() == 1
        assert agent.updater.step.entered_at == 1_000.0


@pytest.mark.broker
def test_kill_and_restart_keep_the_data_directory(broker: BrokerProcess, tmp_path: Path) -> None:
    async def scenario() -> None:
        fleet = SimulatedFleet(broker.address, 2, tmp_path, prefix="kr")
        await fleet.start()
        try:
            old = fleet.kill("kr-0001")
            assert old.outbox is None and not old.link.connected
            assert fleet.killed == {"kr-0001"}
            new = await fleet.restart("kr-0001", wait_connected=True)
            assert new is not old and new.link.connected
            assert new.config.data_dir == old.config.data_dir
            assert fleet.agent("kr-0001") is new and not fleet.killed
        finally:
            await fleet.stop(drain_timeout=0)

    asyncio.run(scenario())
