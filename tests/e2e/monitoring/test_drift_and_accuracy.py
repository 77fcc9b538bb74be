"""Drift and accuracy alerts end to end: real agents, a real broker, a real controller process.

Six devices run iris:1. The simulator shifts one feature by two standard deviations on two of
them and feeds back labels that disagree with the model on two others. Within a few metrics
windows the shifted devices' drift alerts fire and the mislabelled devices' accuracy alerts fire;
the untouched devices raise nothing, the mislabelled ones no drift. The accuracy alert runs the
configured retraining command (a real script that trains a model) with the alert's context; the
controller converts and registers what it hands back as iris:2 and deploys it to one alerting
device as a canary.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from controller.app.cli import cli
from controller.cli.client import ControllerClient
from controller.cli.exit_codes import ExitCode
from simulator.broker import BrokerProcess
from simulator.demo import start_controller, stop_process
from simulator.fleet import SimulatedFleet
from simulator.workload import Workload, load_dataset
from tests.harness.telemetry import iris_conversion
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker, pytest.mark.slow]

WINDOW_S = 1.5
HOOK = """
import json, os, sys
import joblib, numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

context = json.load(sys.stdin)
with open(sys.argv[1], "w") as f:
    json.dump({"stdin": context, "env": {k: v for k, v in os.environ.items()
                                         if k.startswith("EDGEWISE_")}}, f)
x, y = load_iris(return_X_y=True)
joblib.dump(LogisticRegression(max_iter=300).fit(x, y), "model.joblib")
np.save("sample.npy", x.astype(np.float32))
np.save("labels.npy", y)
print("retrained on", len(y), "rows")
"""


@pytest.fixture
def controller(broker: BrokerProcess, tmp_path: Path):  # type: ignore[no-untyped-def]
    hook = tmp_path / "retrain.py"
    hook.write_text(HOOK)
    seen = tmp_path / "hook-saw.json"
    config = tmp_path / "controller.toml"
    command = " ".join(shlex.quote(p) for p in (sys.executable, str(hook), str(seen)))
    config.write_text(f"""
alert_interval_s = 0.5
alert_fire_after = 3
alert_clear_after = 3
alert_silent_after_s = 3600
retrain_on = "accuracy"
retrain_command = {json.dumps(command)}
retrain_timeout_s = 120
retrain_canary = true
""")
    proc, url = start_controller(tmp_path / "controller", broker,
                                 extra_args=["--config", str(config)])
    yield proc, url, seen
    stop_process(proc)


def test_drift_and_concept_change_fire_their_alerts_and_the_hook_retrains(
        broker: BrokerProcess, controller: tuple[subprocess.Popen[bytes], str, Path],
        tmp_path: Path) -> None:
    _, url, seen_file = controller
    client = ControllerClient(url)
    result = iris_conversion()
    assert client.push_version(result.manifest, result.artifact)["version"] == 1
    prefix = f"mon{uuid.uuid4().hex[:6]}"
    concept = [f"{prefix}-0000", f"{prefix}-0001"]
    drifted = [f"{prefix}-0002", f"{prefix}-0003"]
    normal = [f"{prefix}-0004", f"{prefix}-0005"]

    def firing(kind: str) -> set[str]:
        return {a["device_id"] for a in client.alerts(kind=kind) if a["device_id"].startswith(prefix)}

    async def scenario() -> tuple[SimulatedFleet, dict]:
        fleet = SimulatedFleet(broker.address, 6, tmp_path / "devices", prefix=prefix,
                               metrics_window_s=WINDOW_S, telemetry_flush_interval_s=0.1)
        await fleet.start()
        ours = {a.device_id for a in fleet.agents}
        await wait_for_async(lambda: ours <= {d["device_id"] for d in client.list_devices()}, 20,
                         "the devices to register")
        await asyncio.to_thread(client.deploy, "iris", 1, sorted(ours))
        assert await fleet.wait_for_version("iris", 1, timeout=60)
        workload = Workload(fleet, load_dataset("iris"), rate_per_device=100,
                            feedback_delay_s=0.1, seed=1)
        workload.shift_features(drifted, ["petal length (cm)"], sd=2.0)
        workload.change_concept(concept)
        workload.start()
        try:
            await wait_for_async(lambda: firing("drift") >= set(drifted), 60,
                             "drift alerts on the shifted devices")
            await wait_for_async(lambda: firing("accuracy") >= set(concept), 60,
                             "accuracy alerts on the mislabelled devices")
            # a few more windows: nothing else may fire meanwhile
            await asyncio.sleep(3 * WINDOW_S)
            runs: list[dict] = []

            def hook_done() -> bool:
                runs[:] = client.retrain_runs()
                return bool(runs) and runs[-1]["status"] != "running"

            await wait_for_async(hook_done, 120, "the retraining run to finish")
            run = runs[-1]
            assert run["status"] == "ok", run["detail"]
            canary = next(a for a in fleet.agents if a.device_id in run["context"]["devices"]
                          and a.device_id in run["detail"])
            await wait_for_async(lambda: canary.active is not None and canary.active.version == 2,
                             60, f"the canary {canary.device_id} to run iris:2")
        finally:
            await workload.stop()
            await fleet.stop(drain_timeout=5)
        return fleet, run

    fleet, run = asyncio.run(scenario())

    drift, accuracy = firing("drift"), firing("accuracy")
    assert drift == set(drifted), f"drift alerts on {sorted(drift)}"
    assert set(concept) <= accuracy and not accuracy & set(normal), sorted(accuracy)

    # the hook ran with the alert's context, on stdin and in its environment
    seen = json.loads(seen_file.read_text())
    context = seen["stdin"]
    assert (context["kind"], context["model"], context["version"]) == ("accuracy", "iris", 1)
    assert set(context["devices"]) & set(concept)
    assert set(context["devices"]) <= set(concept) | set(drifted)
    assert all(a["kind"] == "accuracy" and a["event"] == "fired" for a in context["alerts"])
    assert seen["env"]["EDGEWISE_ALERT_KIND"] == "accuracy"
    assert seen["env"]["EDGEWISE_DEVICES"] == ",".join(context["devices"])
    assert run["new_version"] == 2 and "canary" in run["detail"]
    versions = [v["version"] for v in client.get_model("iris")["versions"]]
    assert versions == [1, 2]

    # the operator's view: `edgewise alerts` exits 7 while alerts fire, JSON for scripts
    out = CliRunner().invoke(cli, ["--controller", url, "alerts", "--json", "--kind", "drift"])
    assert out.exit_code == ExitCode.ALERTS_FIRING, out.output
    assert set(drifted) <= {a["device_id"] for a in json.loads(out.output)}
    table = CliRunner().invoke(cli, ["--controller", url, "metrics", "iris:1", "--group", "site"])
    assert table.exit_code == 0 and "iris:1" in table.output, table.output
    agg = client.version_metrics("iris", 1, per_device=True)
    assert agg["devices"][drifted[0]]["drifted"] is True
    assert agg["devices"][normal[0]]["drift_psi"] < agg["devices"][drifted[0]]["drift_psi"]
