"""Device health end to end on a real broker: a real `edgewise-agent` process reports health
that matches /proc and statvfs, its windows reach the controller through the outbox with the
model's cost, `edgewise device health` shows them, and `edgewise device logs` returns a warning
the agent logged seconds before."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from controller.app.service import Controller
from controller.config import ControllerConfig
from edgewise_mqtt.link import MqttLink
from edgewise_wire.topics import DeviceChannel, device_topic
from simulator.broker import BrokerProcess, free_port
from simulator.workload import load_dataset
from tests.harness.agents import AgentProcess
from tests.harness.api_server import serving
from tests.harness.controller_env import run_cli
from tests.harness.telemetry import install_model, iris_conversion
from tests.harness.waiting import wait_for_async

ROWS = load_dataset("iris").features.tolist()


def proc_rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.broker
def test_a_real_agent_reports_its_health_and_its_logs(tmp_path: Path,
                                                      broker: BrokerProcess) -> None:
    device = f"health-{free_port()}"
    agent = AgentProcess(tmp_path / "dev", device, broker.address, None,
                         metrics_window_s=1.0, health_sample_s=0.2)
    install_model(agent.data_dir, iris_conversion())
    controller = Controller(ControllerConfig(data_dir=tmp_path / "ctl", broker=broker.address))

    async def scenario() -> None:
        await controller.start()
        agent.start()
        try:
            assert agent.proc is not None
            for i in range(40):
                agent.predict_ok(ROWS[i])
            store = controller.health_store

            def served_windows() -> list[dict] | None:
                windows = store.history(device, 0.0)
                return windows if sum(w["predictions"] or 0 for w in windows) == 40 \
                    and len(windows) >= 2 else None

            try:
                windows = await wait_for_async(served_windows, 30,
                                               "health windows with predictions",
                                               interval=0.2, in_thread=True)
            except AssertionError:
                raise AssertionError(f"{store.history(device, 0.0)[-3:]}\n{store.stats}\n"
                                     f"{controller.bridge.stats}\n"
                                     f"{agent.log_text()[-3000:]}") from None
            # the window describes this very process: RSS within a few percent of /proc now
            newest = store.latest([device])[device]
            rss_now = proc_rss(agent.proc.pid)
            assert abs(newest["rss_bytes"] - rss_now) / rss_now < 0.05, (newest, rss_now)
            st = os.statvfs(agent.data_dir)
            free = st.f_bavail * st.f_frsize
            assert abs(newest["disk_free_bytes"] - free) < max(0.01 * free, 64 * 2**20)
            assert newest["disk_total_bytes"] == st.f_blocks * st.f_frsize
            assert newest["mem_available_bytes"] > 0 and newest["load1"] is not None
            assert 0 <= newest["cpu_percent"] < 100 * (os.cpu_count() or 1)
            # the model's cost: every prediction counted, session memory measured at start
            assert all((w["model"], w["version"]) == ("iris", 1) for w in windows)
            assert all(w["session_bytes"] is not None for w in windows)
            served = [w for w in windows if w["predictions"]]
            assert all(w["cpu_s"] > 0 and w["latency_ms"] > 0 for w in served)

            # a warning the agent logs now comes back through `edgewise device logs`
            probe = MqttLink(f"probe-{device}", broker.address, on_message=lambda t, p: None)
            await probe.start()
            await probe.publish_and_wait(device_topic(device, DeviceChannel.DESIRED),
                                         b"not json", retain=False)
            await probe.stop()
            with serving(controller) as url:
                async def warned() -> bool:
                    code, out = await run_cli(url, "device", "logs", device, "--since", "1m",
                                              "--json")
                    assert code == 0, out
                    return any("dropped message (malformed)" in line["message"]
                               for line in json.loads(out)["lines"])

                deadline = time.monotonic() + 20
                while not await warned():
                    assert time.monotonic() < deadline, "the warning never came back"
                    await asyncio.sleep(0.5)
                code, out = await run_cli(url, "device", "health", device, "--json")
                assert code == 0, out
                view = json.loads(out)
                assert view["latest"]["rss_bytes"] > 0
                assert [(v["model"], v["version"]) for v in view["versions"]] == [("iris", 1)]
                code, text = await run_cli(url, "device", "health", device)
                assert code == 0 and "MODEL COST PER VERSION" in text and "iris:1" in text, text
                code, text = await run_cli(url, "fleet")
                assert code == 0 and "DISK FREE" in text, text
                code, text = await run_cli(url, "device", "logs", "no-such-device",
                                           "--timeout", "1")
                assert code != 0 and "did not send its logs within 1 s" in text, text
        finally:
            agent.stop()
            await controller.stop()

    asyncio.run(scenario())


def test_an_agent_without_its_broker_says_so_once_in_its_log(tmp_path: Path) -> None:
    """A wrongly enrolled device is not silent in `journalctl`: one WARNING line naming the
    broker and the cause, not one per retry."""
    from edgewise_mqtt.link import BrokerAddress

    port = free_port()  # nothing listens there
    agent = AgentProcess(tmp_path / "dev", f"lonely-{port}", BrokerAddress("127.0.0.1", port),
                         None)
    agent.start()
    try:
        time.sleep(3.0)  # the link retries several times meanwhile
        assert agent.alive
    finally:
        agent.stop()
    lines = [line for line in agent.log_text().splitlines() if "cannot connect" in line]
    assert len(lines) == 1, agent.log_text()[-2000:]
    assert " WARNING edgewise.mqtt: " in lines[0]
    assert f"cannot connect to broker 127.0.0.1:{port}: connection refused" in lines[0]
