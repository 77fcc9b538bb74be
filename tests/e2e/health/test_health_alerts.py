"""Each health alert fires on exactly the affected devices of a fleet on a real broker, and clears
after the fault: a device heating up, a disk filling, a memory leak, a flapping link, an agent
that restarts again and again; the healthy device never alerts. Boards are fake /proc and /sys
trees (tests/harness/fake_board.py); agents, broker, outbox and controller are real."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controller.app.service import Controller
from controller.config import ControllerConfig
from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig
from simulator.broker import BrokerProcess, free_port
from tests.harness.fake_board import MIB, FakeBoard
from tests.harness.waiting import wait_for_async

pytestmark = pytest.mark.broker

SPAN_S = 6.0  # the alerts' look-back in this test (an hour by default)
THRESHOLDS = {"recent_s": SPAN_S, "leak_lookback_s": SPAN_S, "leak_min_span_s": 2.0,
              "leak_min_windows": 4, "reconnects": 3, "restarts": 3}


def test_each_health_alert_fires_on_its_devices_and_clears(tmp_path: Path,
                                                           broker: BrokerProcess) -> None:
    prefix = f"ha{free_port()}"
    names = ["hot", "full", "leaky", "flappy", "restarting", "healthy"]
    boards = {n: FakeBoard(tmp_path / "boards" / n) for n in names}
    ids = {n: f"{prefix}-{n}" for n in names}
    expected = {(ids["hot"], "overheating"), (ids["full"], "disk_nearly_full"),
                (ids["leaky"], "memory_leak"), (ids["flappy"], "reconnect_storm"),
                (ids["restarting"], "restarts")}
    controller = Controller(ControllerConfig(data_dir=tmp_path / "ctl", broker=broker.address,
                                             health_alerts=THRESHOLDS))
    controller.device_health.cache_s = 0.0

    def make_agent(name: str) -> EdgeAgent:
        data_dir = tmp_path / "dev" / name
        config = AgentConfig(device_id=ids[name], data_dir=data_dir, broker=broker.address,
                             metrics_window_s=0.5, health_sample_s=0.1,
                             telemetry_flush_interval_s=0.05)
        return EdgeAgent(config, health_sources=boards[name].sources(data_dir))

    def firing() -> set[tuple[str, str]]:
        return {(a.device_id, a.kind) for a in controller.device_health.alerts()
                if a.device_id.startswith(prefix)}

    async def scenario() -> None:
        await controller.start()
        agents = {n: make_agent(n) for n in names}
        for agent in agents.values():
            await agent.start()
        faults = True

        async def leak() -> None:
            while faults:
                boards["leaky"].set_rss(boards["leaky"].rss + MIB)
                await asyncio.sleep(0.1)

        async def flap() -> None:
            while faults:
                await asyncio.sleep(0.4)
                agents["flappy"].link.drop_connection()

        async def restart() -> None:
            while faults:
                await asyncio.sleep(0.8)
                await agents["restarting"].stop()
                agents["restarting"] = make_agent("restarting")
                await agents["restarting"].start()

        try:
            boards["hot"].set_temp(85.0)
            boards["full"].disk_free = 50 * MIB
            tasks = [asyncio.create_task(t()) for t in (leak, flap, restart)]

            def all_firing() -> bool:
                return firing() == expected

            try:
                await wait_for_async(all_firing, 60, "every fault's alert", interval=0.25,
                                     in_thread=True)
            except AssertionError:
                raise AssertionError(f"firing {sorted(firing())}, expected "
                                     f"{sorted(expected)}") from None
            explained = {a.kind: a.explanation for a in controller.device_health.alerts()}
            assert "85.0 degC" in explained["overheating"]
            assert "50.0 MiB free" in explained["disk_nearly_full"]
            # the faults end: the alerts clear (heat and disk at the next window, the others
            # once the fault is older than the look-back)
            faults = False
            await asyncio.gather(*tasks)
            boards["hot"].set_temp(55.0)
            boards["full"].disk_free = 5 * 1024 * MIB
            try:
                await wait_for_async(lambda: not firing(), 60, "every alert to clear",
                                     interval=0.25, in_thread=True)
            except AssertionError:
                raise AssertionError(f"still firing {sorted(firing())}") from None
        finally:
            faults = False
            for agent in agents.values():
                await agent.stop()
            await controller.stop()

    asyncio.run(scenario())
