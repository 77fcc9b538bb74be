"""The device class a model version is built for, signed, end to end: a real controller process,
a real Mosquitto, enforcing agents of two classes.

A version registered for class ``camera-v2`` (``edgewise models push --device-class``) is
deployed to a camera and to a device the controller takes for a camera too: it was one when it
last reported, and was reconfigured as ``pi4`` while offline (a controller skips devices it
knows to be of another class; docs/rollouts.md). The camera installs it; the pi4 device refuses
the desired state, although it is validly signed and sealed for it (the controller published it
there), counts the refusal as ``other_class``, reports it to the controller, and keeps serving
the version it had.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import joblib
import numpy as np
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from controller.app.cli import cli
from controller.cli.client import ControllerClient
from edge_agent.agent import EdgeAgent
from simulator.broker import BrokerProcess
from simulator.fleet import DeviceGroup, SimulatedFleet
from simulator.keys import controller_trusted_keys
from simulator.workload import load_dataset
from tests.e2e.signing.test_signed_updates import (  # noqa: F401 (fixtures)
    TIMEOUT,
    Converted,
    controller,
    models,
)
from tests.harness.waiting import wait_for_async


def _where(agents: list[EdgeAgent]) -> str:
    return str([(a.device_id, a.config.device_class, a.state, str(a.active), a.last_error,
                 dict(a.updater.gate.refusals)) for a in agents])


def test_a_version_signed_for_another_device_class_is_refused(
        fresh_broker: BrokerProcess, tmp_path: Path, models: Converted,  # noqa: F811
        controller: tuple[Path, ControllerClient]) -> None:  # noqa: F811
    workdir, client = controller
    v1 = client.push_version(models.v1.manifest, models.v1.artifact)["version"]
    # the camera build, registered for its class by the operator's CLI
    data = load_dataset("iris")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=500))
    joblib.dump(model.fit(data.features, data.target), tmp_path / "iris.joblib")
    np.save(tmp_path / "X.npy", data.features[:60])
    pushed = CliRunner().invoke(cli, ["--controller", client.base_url, "models", "push",
                                      str(tmp_path / "iris.joblib"), "--sample",
                                      str(tmp_path / "X.npy"), "--name", "iris",
                                      "--device-class", "camera-v2", "--json", "--quiet"])
    assert pushed.exit_code == 0, pushed.output
    v2 = json.loads(pushed.stdout)["version"]
    stored = client._call("GET", f"/models/iris/versions/{v2}/manifest")
    assert stored["device_class"] == "camera-v2"
    summary = client._call("GET", "/models/iris/summary")
    assert [(v["version"], v["device_class"]) for v in summary["versions"]] == [
        (v1, None), (v2, "camera-v2")]
    shown = CliRunner().invoke(cli, ["--controller", client.base_url, "models", "show", "iris"])
    assert shown.exit_code == 0 and "onnx for camera-v2" in shown.output, shown.output

    async def scenario() -> None:
        # the pi4 device still has the camera configuration it was enrolled with
        fleet = SimulatedFleet.from_groups(
            fresh_broker.address, [DeviceGroup("pi", 1, device_class="camera-v2"),
                                   DeviceGroup("cam", 1, device_class="camera-v2")],
            tmp_path / "devices", prefix="dc", trusted_keys=controller_trusted_keys(workdir))
        await fleet.start()
        old_pi, cam = fleet.agents
        ids = [old_pi.device_id, cam.device_id]
        try:
            await wait_for_async(lambda: len(client.list_devices()) >= 2, TIMEOUT,
                                 "2 devices known", in_thread=True)
            # a version for any class: both take it
            await asyncio.to_thread(client.deploy, "iris", v1, ids)
            assert await fleet.wait_for_version("iris", v1, TIMEOUT), _where(fleet.agents)
            features = models.v1.manifest.smoke_tests[0].inputs[:1]
            before = old_pi.predict(features)
            await old_pi.stop(drain_timeout=0)
            assert client.device(old_pi.device_id)["device_class"] == "camera-v2"

            # the camera build, published to both by the controller itself: it knows no better
            deployed = await asyncio.to_thread(client.deploy, "iris", v2, ids,
                                               {"duration_s": 0.5})
            assert sorted(deployed["devices"]) == sorted(ids) and deployed["skipped"] == []
            # the device comes back reconfigured as pi4; the retained desired state waits for it
            pi = EdgeAgent(dataclasses.replace(old_pi.config, device_class="pi4"))
            fleet.agents[0] = pi
            await pi.start(wait_connected=True)
            await wait_for_async(lambda: cam.active is not None and cam.active.version == v2,
                                 TIMEOUT, lambda: f"the camera on v2: {_where([cam])}")
            await wait_for_async(
                lambda: pi.updater.gate.refusals["other_class"] >= 1
                and "device class 'camera-v2', this device is 'pi4'" in (pi.last_error or ""),
                TIMEOUT, lambda: f"the pi4 device refusing v2: {_where([pi])}")
            assert cam.updater.gate.refusals["other_class"] == 0
            # the refused desired state was validly sealed for the device: no other refusal
            assert pi.updater.gate.refusals["other_device"] == 0
            assert pi.updater.gate.refusals["replay"] == 0
            assert pi.updater.status()["refused"]["other_class"] >= 1

            # the pi4 device keeps serving v1, and the controller sees why
            assert pi.active is not None and pi.active.version == v1
            after = pi.predict(features)
            assert [p.version for p in after] == [v1]
            assert [p.label for p in after] == [p.label for p in before]
            device = await wait_for_async(
                lambda: (d := client.device(pi.device_id)) and "camera-v2" in
                (d.get("last_error") or "") and d, TIMEOUT,
                "the controller to see the refusal", in_thread=True)
            assert (device["active_model"], device["active_version"]) == ("iris", v1)
            assert device["device_class"] == "pi4"  # and knows its class from now on
        finally:
            await fleet.stop()

    asyncio.run(scenario())
