"""Two controller replicas on one PostgreSQL database and one Mosquitto.

Real processes (`edgewise controller serve --db-url ... --share-group ...`), real agents
(SimulatedFleet), SIGKILL for the crashes. The share group spreads the fleet's telemetry over
the replicas; the decider lease (controller/app/lease.py) lets one of them run the rollouts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from controller.cli.client import ControllerClient, ControllerClientError
from controller.storage import Database, migrator
from edge_agent.outbox import TelemetryOutbox
from simulator.broker import BrokerProcess, free_port
from simulator.demo import start_controller, stop_process
from simulator.fleet import SimulatedFleet
from simulator.workload import Workload, load_dataset
from tests.harness.controller_env import DesiredRecorder
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker, pytest.mark.slow]

GROUP = "ewtest"


class Replica:
    def __init__(self, name: str, broker: BrokerProcess, root: Path, db_url: str) -> None:
        self.name = name
        self.broker = broker
        self.workdir = root / name
        self.args = ["--db-url", db_url, "--share-group", GROUP,
                     "--artifact-dir", str(root / "shared-artifacts")]
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = ControllerClient(f"http://127.0.0.1:{self.port}", timeout=10.0)
        self.last_health: dict[str, Any] = {}

    def start(self) -> None:
        self.proc, _ = start_controller(self.workdir, self.broker, port=self.port,
                                        extra_args=self.args)

    def health(self) -> dict[str, Any]:
        self.last_health = self.client.health()
        return self.last_health

    def leads(self) -> bool:
        return bool(self.health()["lease"]["held"])

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def log(self) -> str:
        path = self.workdir / "controller.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_together(replicas: list[Replica]) -> None:
    errors: list[BaseException] = []

    def run(r: Replica) -> None:
        try:
            r.start()
        except BaseException as exc:  # reported below, with the replica's log
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, f"{errors}\n" + "\n".join(r.log()[-3000:] for r in replicas)


def stored_seqs(db_url: str) -> dict[str, list[int]]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT device_id, seq FROM telemetry ORDER BY seq"))
            seqs: dict[str, list[int]] = defaultdict(list)
            for device_id, seq in rows:
                seqs[device_id].append(seq)
            return seqs
    finally:
        engine.dispose()


def schema_status(db_url: str) -> migrator.Status:
    db = Database(db_url)
    try:
        return migrator.status(db)
    finally:
        db.dispose()


def test_replicas_start_at_once_split_telemetry_and_lose_nothing_when_one_is_killed(
        fresh_broker: BrokerProcess, tmp_path: Path, pg_url: str, iris_model: Any) -> None:
    a, b = Replica("a", fresh_broker, tmp_path, pg_url), Replica("b", fresh_broker, tmp_path,
                                                                 pg_url)
    # both start at once against an empty database: the schema is created once, cleanly
    start_together([a, b])
    try:
        assert schema_status(pg_url).up_to_date  # every revision applied, none failed
        for r in (a, b):
            assert "Traceback" not in r.log(), r.log()[-3000:]
        assert [a.leads(), b.leads()].count(True) == 1  # one decider
        assert a.client.push_version(iris_model.manifest, iris_model.artifact)["version"] == 1

        async def scenario() -> tuple[SimulatedFleet, Workload, dict[str, int]]:
            fleet = SimulatedFleet(fresh_broker.address, 20, tmp_path / "devices",
                                   ack_timeout_s=2.0)
            await fleet.start()
            workload = Workload(fleet, load_dataset("iris"), rate_per_device=10,
                                feedback_delay_s=0.2)
            try:
                ids = {ag.device_id for ag in fleet.agents}
                await wait_for_async(lambda: ids <= {d["device_id"] for d in b.client.list_devices()},
                               30, "20 devices to register", interval=0.2, in_thread=True)
                # deployed through b; each agent fetches the artifact's chunks from whichever
                # replica the share group hands its request to: both serve the shared store
                await asyncio.to_thread(b.client.deploy, "iris", 1, sorted(ids))
                assert await fleet.wait_for_version("iris", 1, timeout=60)
                workload.start()
                # both replicas ingest: the split is visible in their bridge counters
                await wait_for_async(lambda: all(r.health()["bridge"].get("batches", 0) >= 5
                                           for r in (a, b)), 30, "both replicas to ingest", interval=0.2, in_thread=True)
                await asyncio.sleep(1.0)
                split = {r.name: int(r.health()["bridge"]["batches"]) for r in (a, b)}
                b.kill()  # in the middle of ingesting
                await asyncio.sleep(2.0)
                await workload.stop()
                assert await fleet.wait_drained(45), "telemetry still unacknowledged"
            finally:
                await workload.stop()
                await fleet.stop(drain_timeout=5)
            return fleet, workload, split

        fleet, workload, split = asyncio.run(scenario())
        assert workload.stats["predictions"] > 200
        assert split["a"] > 0 and split["b"] > 0
        # nothing lost, nothing doubled: every device's stored seqs are exactly 1..N
        stored = stored_seqs(pg_url)
        produced = 0
        for agent in fleet.agents:
            outbox = TelemetryOutbox(agent.config.data_dir / "outbox.sqlite")
            stats = outbox.stats()
            outbox.close()
            assert stats.pending == 0 and stats.dropped_total == 0, agent.device_id
            assert stored[agent.device_id] == list(range(1, stats.last_seq + 1)), agent.device_id
            produced += stats.last_seq
        assert produced > 100
        assert sum(len(v) for v in stored.values()) == produced
    finally:
        a.stop()
        b.stop()


def test_killing_the_lease_holder_mid_rollout_hands_the_rollout_over(
        fresh_broker: BrokerProcess, tmp_path: Path, pg_url: str, iris_model: Any) -> None:
    a, b = Replica("a", fresh_broker, tmp_path, pg_url), Replica("b", fresh_broker, tmp_path,
                                                                 pg_url)
    a.start()
    b.start()
    try:
        leader, other = (a, b) if a.leads() else (b, a)
        assert leader.leads() and not other.leads()
        assert other.client.push_version(iris_model.manifest, iris_model.artifact)["version"] == 1

        async def scenario() -> tuple[SimulatedFleet, DesiredRecorder, dict[str, Any]]:
            recorder = DesiredRecorder(fresh_broker.address)
            await recorder.start()
            fleet = SimulatedFleet(fresh_broker.address, 20, tmp_path / "devices")
            await fleet.start()
            workload = Workload(fleet, load_dataset("iris"), rate_per_device=2,
                                feedback_delay_s=0.2)
            workload.start()
            try:
                ids = {ag.device_id for ag in fleet.agents}
                await wait_for_async(lambda: ids <= {d["device_id"] for d in other.client.devices()},
                               30, "20 devices to register", interval=0.2, in_thread=True)
                # created through the replica that does not decide: the leader runs it
                view = await asyncio.to_thread(other.client.create_rollout, {
                    "model": "iris", "version": 1, "waves": "25%,50%,100%",
                    "soak_seconds": 4})

                def first_wave_done() -> bool:
                    waves = other.client.rollout(str(view["id"]))["waves"]
                    return bool(waves[0]["active"] == waves[0]["devices"] > 0)

                try:
                    await wait_for_async(first_wave_done, 40, "the first wave to be active", interval=0.2, in_thread=True)
                except AssertionError as exc:
                    raise AssertionError(f"{exc}: {other.client.rollout(str(view['id']))}\n"
                                         f"{leader.log()[-3000:]}") from None
                leader.kill()  # during the first wave's soak: the rollout is half done
                await wait_for_async(other.leads, 15, "the other replica to take the lease", interval=0.2, in_thread=True)
                final: dict[str, Any] = {}

                def completed() -> bool:
                    nonlocal final
                    try:
                        final = other.client.rollout(str(view["id"]))
                    except ControllerClientError:
                        return False
                    return final["status"] == "completed"

                await wait_for_async(completed, 60, "the rollout to complete on the other replica", interval=0.2, in_thread=True)
                assert await fleet.wait_for_version("iris", 1, timeout=30)
            finally:
                await workload.stop()
                await fleet.stop(drain_timeout=2)
                await recorder.stop()
            return fleet, recorder, final

        fleet, recorder, final = asyncio.run(scenario())
        assert [(w["devices"], w["active"]) for w in final["waves"]] == [(5, 5), (5, 5),
                                                                          (10, 10)]
        # on the wire: every device got exactly one order, this rollout's, and no other
        assert {(s.model, s.version, s.deployment_id) for s in recorder.sent} == \
            {("iris", 1, "ro-1")}
        per_device = Counter(s.device_id for s in recorder.sent)
        assert set(per_device) == {ag.device_id for ag in fleet.agents}
        assert set(per_device.values()) == {1}, per_device
        assert "lease 'decider' taken over" in other.log()
    finally:
        a.stop()
        b.stop()
