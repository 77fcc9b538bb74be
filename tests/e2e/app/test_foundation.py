"""End to end over a real broker: a scikit-learn model travels to 10 simulated agents, they
serve predictions, and every telemetry record they produce is stored exactly once."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from controller.cli.client import ControllerClient
from simulator.broker import BrokerProcess
from simulator.demo import start_controller, stop_process
from simulator.fleet import SimulatedFleet
from simulator.workload import Workload, load_dataset

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _convert_iris():  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from converters import convert_sklearn

    data = load_dataset("iris")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(data.features, data.target)
    return convert_sklearn(model, data.features, name="iris", labels=data.target)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def controller(request: pytest.FixtureRequest, broker: BrokerProcess, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A controller process on an SQLite file, or on a fresh PostgreSQL database."""
    extra = []
    if request.param == "postgres":
        extra = ["--db-url", request.getfixturevalue("pg_module_url")]
    proc, url = start_controller(tmp_path / "controller", broker, extra_args=extra)
    yield proc, url
    stop_process(proc)


def test_ten_agents_receive_v1_and_every_record_is_stored_once(
        broker: BrokerProcess, controller: tuple[subprocess.Popen[bytes], str],
        tmp_path: Path) -> None:
    _, url = controller
    client = ControllerClient(url)
    result = _convert_iris()
    stored = client.push_version(result.manifest, result.artifact)
    assert stored["version"] == 1

    async def scenario() -> tuple[SimulatedFleet, Workload]:
        # health sampling off: the sums below count predictions, labels and windows exactly
        # (health records have their own tests in tests/e2e/health)
        fleet = SimulatedFleet(broker.address, 10, tmp_path / "devices", prefix="e2e",
                               health_sample_s=0)
        await fleet.start()
        ours = {a.device_id for a in fleet.agents}
        for _ in range(100):  # the broker is shared with other tests: count our devices only
            known = {d["device_id"] for d in await asyncio.to_thread(client.list_devices)}
            if ours <= known:
                break
            await asyncio.sleep(0.1)
        deployment = await asyncio.to_thread(client.deploy, "iris", 1, sorted(ours))
        assert len(deployment["devices"]) == 10
        assert await fleet.wait_for_version("iris", 1, timeout=60)
        workload = Workload(fleet, load_dataset("iris"), rate_per_device=20, feedback_delay_s=0.2)
        workload.start()
        await asyncio.sleep(3)
        await workload.stop()
        assert await fleet.wait_drained(30)
        await fleet.stop(drain_timeout=5)
        return fleet, workload

    fleet, workload = asyncio.run(scenario())
    assert workload.stats["predictions"] > 100
    assert workload.stats["feedback"] > 50

    devices = {d["device_id"]: d for d in client.list_devices()}
    total_produced = prediction_records = predictions = 0
    for agent in fleet.agents:
        # each agent's outbox numbered its records 1..N with no gaps (nothing dropped), and the
        # controller holds exactly that set: nothing lost, nothing doubled
        produced = agent.config.data_dir / "outbox.sqlite"
        assert produced.exists()
        from edge_agent.outbox import TelemetryOutbox

        outbox = TelemetryOutbox(produced)
        stats = outbox.stats()
        outbox.close()
        assert stats.pending == 0 and stats.dropped_total == 0
        count = client.telemetry_count(agent.device_id)
        assert count == stats.last_seq, agent.device_id
        total_produced += stats.last_seq
        row = devices[agent.device_id]
        assert row["active_model"] == "iris" and row["active_version"] == 1
        assert row["predictions"] > 0
        predictions += row["predictions"]  # the fleet view weighs a columnar record by its n
        # the agents record predictions columnar (the default): one record per flush
        assert client.telemetry_count(agent.device_id, "prediction") == 0
        prediction_records += client.telemetry_count(agent.device_id, "predictions")
        assert row["accuracy"] is not None and row["accuracy"] > 0.8
    # plus one "metrics" window summary per device at its clean stop
    windows = sum(agent.monitor.stats["windows"] for agent in fleet.agents)
    assert windows == len(fleet.agents)
    assert total_produced == prediction_records + workload.stats["feedback"] + windows
    assert predictions == workload.stats["predictions"]  # every prediction, once
