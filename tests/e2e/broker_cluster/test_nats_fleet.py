"""The fleet scenarios on a 3-node NATS cluster (MQTT listener, JetStream) instead of Mosquitto.

Real processes: three ``nats-server`` nodes on free ports, a real `edgewise controller serve`
(SQLite), real agents (SimulatedFleet) and SIGKILL for a node's crash. In the first scenario the
controller and the agents are spread over the nodes directly, so every message crosses the
cluster's routes; in the second they all connect through a TCP balancer (as a deployment would)
and the node holding the controller's connection is killed in the middle of a rollout while the
fleet is sending telemetry: its clients reconnect to the nodes that are left.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from controller.cli.client import ControllerClient, ControllerClientError
from edge_agent.outbox import TelemetryOutbox
from edgewise_mqtt.link import BrokerAddress
from simulator.demo import start_controller, stop_process
from simulator.fleet import DeviceGroup, SimulatedFleet
from simulator.nats_cluster import NatsCluster
from simulator.tcp_balancer import TcpBalancer
from simulator.workload import Workload, load_dataset
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker, pytest.mark.slow]

DEVICES = 15


class Controller:
    def __init__(self, workdir: Path, broker: BrokerAddress) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes]
        self.proc, url = start_controller(workdir, broker)
        self.client = ControllerClient(url, timeout=10.0)

    def stop(self) -> None:
        stop_process(self.proc)

    def log(self) -> str:
        path = self.workdir / "controller.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stored_seqs(self) -> dict[str, list[int]]:
        engine = sa.create_engine(f"sqlite:///{self.workdir / 'controller.sqlite'}")
        try:
            with engine.connect() as conn:
                seqs: dict[str, list[int]] = defaultdict(list)
                for device_id, seq in conn.execute(
                        sa.text("SELECT device_id, seq FROM telemetry ORDER BY seq")):
                    seqs[device_id].append(seq)
                return seqs
        finally:
            engine.dispose()


def fleet_on(broker_for: Callable[[str], BrokerAddress], default: BrokerAddress,
             root: Path) -> SimulatedFleet:
    return SimulatedFleet.from_groups(default, [DeviceGroup("g", DEVICES)], root / "devices",
                                      prefix="nats", broker_for=broker_for, ack_timeout_s=2.0)


def assert_nothing_lost_nor_doubled(fleet: SimulatedFleet, controller: Controller) -> int:
    """Every device's stored seqs are exactly 1..N of its outbox; returns the total N."""
    stored = controller.stored_seqs()
    produced = 0
    for agent in fleet.agents:
        outbox = TelemetryOutbox(agent.config.data_dir / "outbox.sqlite")
        stats = outbox.stats()
        outbox.close()
        assert stats.pending == 0 and stats.dropped_total == 0, agent.device_id
        assert stored[agent.device_id] == list(range(1, stats.last_seq + 1)), agent.device_id
        produced += stats.last_seq
    assert sum(len(v) for v in stored.values()) == produced
    return produced


async def rollout_under_load(controller: Controller, fleet: SimulatedFleet,
                             mid_rollout: Callable[[], None] | None = None) -> dict[str, Any]:
    """Register the fleet, start telemetry, roll iris:1 out in two waves (``mid_rollout`` runs
    once the first wave is active), wait until every device runs it and all telemetry is
    acknowledged; returns the final rollout view."""
    client = controller.client
    await fleet.start()
    workload = Workload(fleet, load_dataset("iris"), rate_per_device=5, feedback_delay_s=0.2)
    try:
        ids = {a.device_id for a in fleet.agents}
        await wait_for_async(lambda: ids <= {d["device_id"] for d in client.list_devices()},
                             60, f"{DEVICES} devices to register", interval=0.2, in_thread=True)
        # a model already on every device, so telemetry flows before and during the rollout
        await asyncio.to_thread(client.deploy, "iris", 1, sorted(ids))
        assert await fleet.wait_for_version("iris", 1, timeout=60), controller.log()
        workload.start()
        view = await asyncio.to_thread(client.create_rollout, {
            "model": "iris", "version": 2, "waves": "34%,100%", "soak_seconds": 3})

        def first_wave_active() -> bool:
            waves = client.rollout(str(view["id"]))["waves"]
            return bool(waves[0]["active"] == waves[0]["devices"] > 0)

        await wait_for_async(first_wave_active, 60, "the first wave to be active",
                             interval=0.2, in_thread=True)
        if mid_rollout is not None:
            mid_rollout()
        final: dict[str, Any] = {}

        def completed() -> bool:
            nonlocal final
            try:
                final = client.rollout(str(view["id"]))
            except ControllerClientError:
                return False
            return final["status"] == "completed"

        try:
            await wait_for_async(completed, 90, "the rollout to complete", interval=0.3,
                                 in_thread=True)
        except AssertionError as exc:
            health = await asyncio.to_thread(client.health)
            behind = [(a.device_id, a.state, a.link.connected, a.link.connect_count,
                       a.link.subscribe_refused) for a in fleet.agents
                      if not (a.active and a.active.version == 2)]
            raise AssertionError(f"{exc}: {final}\nhealth: {health}\nbehind: {behind}\n"
                                 f"{controller.log()}") from None
        assert await fleet.wait_for_version("iris", 2, timeout=60)
        await asyncio.sleep(1.0)  # some telemetry on the new version too
        await workload.stop()
        assert await fleet.wait_drained(60), "telemetry still unacknowledged"
        assert workload.stats["predictions"] > 100
        return final
    finally:
        await workload.stop()
        await fleet.stop(drain_timeout=5)


def push_two_versions(controller: Controller, models: tuple[Any, Any]) -> None:
    for version, model in enumerate(models, start=1):
        assert controller.client.push_version(model.manifest, model.artifact)["version"] == version


def test_rollout_and_telemetry_with_clients_on_every_node(
        nats_cluster: NatsCluster, tmp_path: Path, iris_models: tuple[Any, Any]) -> None:
    nodes = nats_cluster.addresses
    # the controller on node 1, the devices spread over all three: every message crosses a route
    controller = Controller(tmp_path / "controller", nodes[0])
    try:
        push_two_versions(controller, iris_models)
        fleet = fleet_on(lambda device_id: nodes[int(device_id[-4:]) % 3], nodes[0], tmp_path)
        final = asyncio.run(rollout_under_load(controller, fleet))
        assert [(w["devices"], w["active"]) for w in final["waves"]] == [(6, 6), (9, 9)]
        assert assert_nothing_lost_nor_doubled(fleet, controller) > 100
        assert "Traceback" not in controller.log()
    finally:
        controller.stop()


def test_a_node_killed_mid_rollout_and_mid_ingest_loses_nothing(
        nats_cluster: NatsCluster, nats_balancer: TcpBalancer, tmp_path: Path,
        iris_models: tuple[Any, Any]) -> None:
    # the controller connects first through the balancer: its presence check's short-lived
    # connection, then the bridge's, so it sits on the node of the last connection handed
    controller = Controller(tmp_path / "controller", nats_balancer.address)
    try:
        assert len(nats_balancer.handed_order) == 2, nats_balancer.handed_order
        controller_node = nats_balancer.handed_order[-1]
        push_two_versions(controller, iris_models)
        fleet = fleet_on(lambda _: nats_balancer.address, nats_balancer.address, tmp_path)
        handed_before: dict[int, int] = {}

        def kill_controller_node() -> None:
            handed_before.update(nats_balancer.handed)
            nats_cluster.kill(controller_node)

        final = asyncio.run(rollout_under_load(controller, fleet, kill_controller_node))
        assert [(w["devices"], w["active"]) for w in final["waves"]] == [(6, 6), (9, 9)]
        # the node's clients (the controller and about a third of the fleet) came back elsewhere
        assert handed_before[controller_node] >= 1 + DEVICES // 3 - 1
        moved = sum(nats_balancer.handed[i] - handed_before.get(i, 0)
                    for i in range(3) if i != controller_node)
        assert moved >= handed_before[controller_node]
        assert nats_balancer.handed[controller_node] == handed_before[controller_node]
        assert assert_nothing_lost_nor_doubled(fleet, controller) > 100
    finally:
        controller.stop()
