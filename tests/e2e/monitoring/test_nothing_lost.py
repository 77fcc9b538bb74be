"""Nothing lost, nothing doubled, with real processes and real faults.

*Produced* means committed to an agent's outbox: a record has a seq there, and an outbox with
epoch E that assigned seqs up to N produced exactly (E, 1) .. (E, N), minus the records it
counted as dropped. What was only in memory when a process was SIGKILLed (at most one flush
interval of records, and the open monitoring window) was never produced (docs/monitoring.md).

1. While agents produce telemetry, one fleet process is SIGKILLed and restarted on its data
   directories, the broker is restarted, the controller is SIGKILLed and restarted, and one
   agent's network is cut for a while. Afterwards the controller holds every produced
   (device, epoch, seq) exactly once, and every prediction id once.
2. With a small outbox and the link down, records are dropped by the overflow policy; the
   dropped count the agent reports (and the controller records) equals what is missing at the
   controller, for both policies.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from controller.cli.client import ControllerClient
from controller.fleet.telemetry_store import TelemetryStore
from controller.storage.db import Database
from controller.storage.tables import devices, telemetry
from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig
from edge_agent.outbox import TelemetryOutbox
from edgewise_mqtt.link import BrokerAddress
from simulator.broker import BrokerProcess
from simulator.demo import start_controller, stop_process
from simulator.fleet import SimulatedFleet
from simulator.workload import Workload, load_dataset
from tests.harness.telemetry import TcpProxy, iris_conversion, prediction_ids
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker, pytest.mark.slow]

CUT_S = 8.0  # the issue asks for a minute; the mechanism is the same, the suite stays short
RATE = 20.0
FAST = {"metrics_window_s": 1.0, "ack_timeout_s": 2.0, "telemetry_flush_interval_s": 0.1}


def start_fleet_process(data_dir: Path, prefix: str, broker: BrokerProcess,
                        log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "simulator.fleet_process", "--devices", "2", "--prefix", prefix,
         "--broker", f"{broker.host}:{broker.port}", "--data-dir", str(data_dir),
         "--rate", str(RATE), "--metrics-window", "1", "--ack-timeout", "2",
         "--drain-timeout", "60"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def produced(data_dir: Path) -> tuple[set[tuple[int, int]], int, int]:
    """(epoch, seq) keys an outbox assigned, its dropped count, and what it still holds."""
    with TelemetryOutbox(data_dir / "outbox.sqlite") as box:
        stats = box.stats()
        keys = {(box.epoch, s) for s in range(1, stats.last_seq + 1)}
    return keys, stats.dropped_total, stats.pending


def stored(db_path: Path, device_id: str) -> tuple[list[tuple[int, int]], int, int]:
    """The controller's keys for a device, its prediction ids (all, and distinct), counted in
    both record forms (a columnar row holds ``n`` of them)."""
    db = Database(str(db_path))
    try:
        keys = TelemetryStore(db).keys(device_id)
        with db.read() as conn:
            q = sa.select(telemetry.c.payload_json).where(
                telemetry.c.device_id == device_id,
                telemetry.c.kind.in_(("prediction", "predictions")))
            ids = prediction_ids([json.loads(text) for (text,) in conn.execute(q)])
        return keys, len(ids), len(set(ids))
    finally:
        db.dispose()


def test_kill_restart_and_cut_lose_and_double_nothing(fresh_broker: BrokerProcess,
                                                      tmp_path: Path) -> None:
    broker = fresh_broker
    ctl_dir = tmp_path / "controller"
    prefix = f"nl{uuid.uuid4().hex[:5]}"
    proc_prefix, cut_prefix, direct_prefix = f"{prefix}p", f"{prefix}c", f"{prefix}d"
    controller, url = start_controller(ctl_dir, broker)
    fleet_proc: subprocess.Popen[bytes] | None = None
    proxy = TcpProxy(broker.host, broker.port)
    result = iris_conversion()
    proc_dir = tmp_path / "proc-fleet"
    try:
        client = ControllerClient(url)
        client.push_version(result.manifest, result.artifact)
        fleet_proc = start_fleet_process(proc_dir, proc_prefix, broker, tmp_path / "fleet.log")

        async def scenario() -> tuple[list[EdgeAgent], dict[str, int]]:
            await proxy.start()
            try:
                return await run(*await setup())
            finally:
                await proxy.stop()

        async def setup() -> tuple[SimulatedFleet, SimulatedFleet]:
            # both record forms through the faults: the cut agent per prediction, the others
            # columnar (the default)
            cut = SimulatedFleet(BrokerAddress(broker.host, proxy.port), 1,
                                 tmp_path / "cut-fleet", prefix=cut_prefix,
                                 telemetry_columnar=False, **FAST)
            direct = SimulatedFleet(broker.address, 1, tmp_path / "direct-fleet",
                                    prefix=direct_prefix, **FAST)
            await cut.start()
            await direct.start()
            return cut, direct

        async def run(cut: SimulatedFleet, direct: SimulatedFleet
                      ) -> tuple[list[EdgeAgent], dict[str, int]]:
            nonlocal controller, url, client, fleet_proc
            ours = {f"{proc_prefix}-0000", f"{proc_prefix}-0001", f"{cut_prefix}-0000",
                    f"{direct_prefix}-0000"}

            def known() -> set[str]:
                return {d["device_id"] for d in client.list_devices()}

            await wait_for_async(lambda: ours <= known(), 30, "all four devices to register")
            await asyncio.to_thread(client.deploy, "iris", 1, sorted(ours))

            def active() -> set[str]:
                return {d["device_id"] for d in client.list_devices()
                        if d["active_version"] == 1 and d["state"] == "active"}

            await wait_for_async(lambda: ours <= active(), 60, "iris:1 active everywhere", 0.2)
            data = load_dataset("iris")
            workloads = [Workload(f, data, rate_per_device=RATE, feedback_delay_s=0.2, seed=i)
                         for i, f in enumerate((cut, direct))]
            for w in workloads:
                w.start()
            await asyncio.sleep(2)

            # 1. SIGKILL the fleet process mid-stream; start it again on the same directories
            assert fleet_proc is not None
            os.killpg(fleet_proc.pid, signal.SIGKILL)
            fleet_proc.wait(10)
            await asyncio.sleep(0.5)
            fleet_proc = start_fleet_process(proc_dir, proc_prefix, broker,
                                             tmp_path / "fleet.log")
            await asyncio.sleep(1.5)

            # 2. restart the broker (same port, persistence on)
            await asyncio.to_thread(broker.stop)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(broker.start)
            await asyncio.sleep(2)

            # 3. SIGKILL the controller; start it again on the same database
            os.killpg(controller.pid, signal.SIGKILL)
            controller.wait(10)
            await asyncio.sleep(0.5)
            controller, url = await asyncio.to_thread(start_controller, ctl_dir, broker)
            client = ControllerClient(url)

            # 4. cut one agent's network for a while; it keeps predicting into its outbox
            await proxy.cut()
            cut_agent = cut.agents[0]
            before = cut_agent.outbox.stats().pending if cut_agent.outbox else 0
            await asyncio.sleep(CUT_S)
            assert cut_agent.outbox is not None and cut_agent.outbox.stats().pending > before
            await proxy.restore()
            await asyncio.sleep(2)

            for w in workloads:
                await w.stop()
            # the fleet process: SIGTERM stops its workload and drains its outboxes
            fleet_proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(fleet_proc.wait, 90) == 0
            assert await cut.wait_drained(60) and await direct.wait_drained(60)
            await cut.stop(drain_timeout=10)
            await direct.stop(drain_timeout=10)
            stats = {k: sum(w.stats[k] for w in workloads) for k in ("predictions", "feedback")}
            return cut.agents + direct.agents, stats

        agents, stats = asyncio.run(scenario())
        assert stats["predictions"] > 200
    finally:
        if fleet_proc is not None and fleet_proc.poll() is None:
            os.killpg(fleet_proc.pid, signal.SIGKILL)
        stop_process(controller)

    dirs = {a.device_id: a.config.data_dir for a in agents}
    dirs.update({f"{proc_prefix}-{i:04d}": proc_dir / f"{proc_prefix}-{i:04d}" for i in (0, 1)})
    stored_predictions = {}
    for device_id, data_dir in sorted(dirs.items()):
        expected, dropped, pending = produced(data_dir)
        keys, predictions, distinct = stored(ctl_dir / "controller.sqlite", device_id)
        assert pending == 0 and dropped == 0, (device_id, pending, dropped)
        assert len(keys) == len(set(keys)), f"{device_id}: a key stored twice"
        missing, extra = expected - set(keys), set(keys) - expected
        assert not missing and not extra, (device_id, sorted(missing)[:10], sorted(extra)[:10])
        assert predictions == distinct > 0, f"{device_id}: a prediction stored twice"
        stored_predictions[device_id] = predictions
    # every prediction the workloads made is at the controller (the agents record all of them)
    assert sum(stored_predictions[a.device_id] for a in agents) == stats["predictions"]
    # the process fleet (two devices at the same rate, killed once) produced its share as well
    process_fleet = sum(stored_predictions[f"{proc_prefix}-{i:04d}"] for i in (0, 1))
    assert process_fleet > stats["predictions"] / 2


@pytest.mark.parametrize("columnar", [True, False], ids=["columnar", "per-row"])
@pytest.mark.parametrize("policy", ["drop_oldest", "refuse_new"])
def test_overflow_drops_are_counted_exactly(broker: BrokerProcess, tmp_path: Path,
                                            policy: str, columnar: bool) -> None:
    """Records are what the outbox bounds and drops: columnar, each prediction here is flushed
    on its own so that it is one record, as a prediction is in the per-row form."""
    ctl_dir = tmp_path / "controller"
    controller, url = start_controller(ctl_dir, broker)
    proxy = TcpProxy(broker.host, broker.port)
    bound, offline_predictions = 40, 150
    device_id = f"of{uuid.uuid4().hex[:6]}"
    try:
        client = ControllerClient(url)
        result = iris_conversion()
        client.push_version(result.manifest, result.artifact)
        rows = load_dataset("iris").features

        async def scenario() -> tuple[int, int, int]:
            await proxy.start()
            try:
                return await run()
            finally:
                await proxy.stop()

        async def run() -> tuple[int, int, int]:
            agent = EdgeAgent(AgentConfig(
                device_id=device_id, data_dir=tmp_path / device_id,
                broker=BrokerAddress(broker.host, proxy.port), outbox_max_records=bound,
                outbox_overflow=policy, ack_timeout_s=2.0, telemetry_flush_interval_s=0.1,
                telemetry_columnar=columnar,
                health_sample_s=0))  # health records would share the bound this test counts
            await agent.start()
            await wait_for_async(lambda: device_id in {d["device_id"] for d in client.list_devices()},
                             20, "the device to register")
            await asyncio.to_thread(client.deploy, "iris", 1, [device_id])
            await wait_for_async(lambda: agent.active is not None, 30, "iris:1 to activate")
            made = 0
            for i in range(10):
                agent.predict(rows[i])
                made += 1
                if columnar:
                    agent.flush()  # one record per prediction
            agent.flush()
            await wait_for_async(lambda: agent.outbox is not None and
                             agent.outbox.stats().pending == 0,
                             20, "the first records to be acknowledged")
            await proxy.cut()  # the link is down from here
            await wait_for_async(lambda: not agent.link.connected, 10, "the link to drop")
            for i in range(offline_predictions):
                agent.predict(rows[i % len(rows)])
                made += 1
                if columnar or i % 10 == 9:
                    agent.flush()  # overflow happens on the way into the outbox
            agent.flush()
            assert agent.outbox is not None
            stats = agent.outbox.stats()
            assert stats.pending == bound and stats.dropped_total > 0
            await proxy.restore()
            await wait_for_async(lambda: agent.link.connected, 30, "the link to come back")
            await agent.stop(drain_timeout=30)
            windows = agent.monitor.stats["windows"]
            with TelemetryOutbox(agent.config.data_dir / "outbox.sqlite") as box:
                final = box.stats()
            assert final.pending == 0
            return made + windows, final.dropped_total, final.last_seq

        created, dropped, last_seq = asyncio.run(scenario())
        reported = next(d for d in client.list_devices() if d["device_id"] == device_id)
    finally:
        stop_process(controller)

    keys, _, _ = stored(ctl_dir / "controller.sqlite", device_id)
    assert created - len(keys) == dropped == reported["dropped_total"] > 0
    seqs = [s for _, s in keys]
    gaps = set(range(1, last_seq + 1)) - set(seqs)
    if policy == "drop_oldest":
        # seqs 1..10 were acknowledged before the cut; of the 150 records of the outage the
        # oldest 110 were deleted to keep the newest 40 (a record appended later, while all 40
        # were in flight, is not kept either: in-flight records are dropped last)
        outage_dropped = offline_predictions - bound
        assert set(range(11, 11 + outage_dropped)) <= gaps and len(gaps) == dropped
    else:
        # refused records never got a seq: no gaps, the newest of the outage are missing
        assert not gaps
    db = Database(str(ctl_dir / "controller.sqlite"))
    try:
        with db.read() as conn:
            row = conn.execute(sa.select(devices.c.dropped_total)
                               .where(devices.c.device_id == device_id)).scalar_one()
        assert row == dropped
    finally:
        db.dispose()


def test_a_replaced_outbox_is_not_taken_for_a_replay(broker: BrokerProcess,
                                                     tmp_path: Path) -> None:
    """A corrupt outbox is moved aside and a new one starts at seq 1 under a new epoch: the
    controller stores those records instead of discarding them as replays of the old seqs."""
    ctl_dir = tmp_path / "controller"
    controller, url = start_controller(ctl_dir, broker)
    device_id = f"ep{uuid.uuid4().hex[:6]}"
    data_dir = tmp_path / device_id
    try:
        client = ControllerClient(url)
        result = iris_conversion()
        client.push_version(result.manifest, result.artifact)
        rows = load_dataset("iris").features

        async def run_agent(predictions: int, deploy: bool) -> int:
            agent = EdgeAgent(AgentConfig(device_id=device_id, data_dir=data_dir,
                                          broker=broker.address, telemetry_flush_interval_s=0.1,
                                          health_sample_s=0))  # the test counts records exactly
            await agent.start()
            try:
                if deploy:
                    await wait_for_async(lambda: device_id in {
                        d["device_id"] for d in client.list_devices()}, 20, "registration")
                    await asyncio.to_thread(client.deploy, "iris", 1, [device_id])
                await wait_for_async(lambda: agent.active is not None, 30, "iris:1 to be active")
                for i in range(predictions):
                    agent.predict(rows[i])
                    agent.flush()  # one record per prediction, in either record form
            finally:
                await agent.stop(drain_timeout=20)
            assert agent.status()["outbox_pending"] is None  # closed
            with TelemetryOutbox(data_dir / "outbox.sqlite") as box:
                assert box.stats().pending == 0
                return box.epoch

        first_epoch = asyncio.run(run_agent(7, deploy=True))
        (data_dir / "outbox.sqlite").write_bytes(b"this is not an SQLite database" * 100)
        for suffix in ("-wal", "-shm"):
            (data_dir / f"outbox.sqlite{suffix}").unlink(missing_ok=True)
        second_epoch = asyncio.run(run_agent(4, deploy=False))
    finally:
        stop_process(controller)
    assert second_epoch != first_epoch
    assert list(data_dir.glob("outbox.sqlite.corrupt-*"))
    keys, predictions, distinct = stored(ctl_dir / "controller.sqlite", device_id)
    by_epoch = {e: sorted(s for k, s in keys if k == e) for e in (first_epoch, second_epoch)}
    # 7 predictions and the window closed at stop; then 4 and a window, numbered from 1 again
    assert by_epoch == {first_epoch: list(range(1, 9)), second_epoch: list(range(1, 6))}
    assert predictions == distinct == 11
