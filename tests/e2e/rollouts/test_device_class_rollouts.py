"""A model version for one device class, on a fleet of two classes: a real controller process,
real Mosquitto, real agents that report their class.

Only the version's class is sent it (checked on the wire); the devices of the other class are
listed as skipped with the reason, never counted as failed, and the rollout completes; late
joiners of either class are sent it or skipped likewise. A rollout or a deployment that selects
nothing but the other class is refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest

from controller.cli.client import ControllerClientError
from edge_agent.agent import EdgeAgent
from simulator.fleet import DeviceGroup, SimulatedFleet
from tests.e2e.rollouts.conftest import Models
from tests.harness.controller_env import ControllerEnv, DesiredRecorder, run_cli, wait_registered
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def runs_one(agent: EdgeAgent) -> bool:
    return agent.state == "active" and agent.active is not None \
        and (agent.active.model, agent.active.version) == ("iris", 1)

PI, CAMERA = "pi4", "camera-v2"
GROUPS = [DeviceGroup("pi", 3, {"hw": "pi"}, device_class=PI),
          DeviceGroup("cam", 3, {"hw": "cam"}, device_class=CAMERA)]


def test_a_class_specific_version_goes_only_to_its_class(env: ControllerEnv,
                                                         models: Models) -> None:
    for_pi = dataclasses.replace(models.good,
                                 manifest=dataclasses.replace(models.good.manifest,
                                                              device_class=PI))
    assert env.push(for_pi) == 1
    outputs: dict[str, tuple[int, str]] = {}

    async def scenario() -> tuple[SimulatedFleet, DesiredRecorder, list[dict[str, Any]]]:
        recorder = DesiredRecorder(env.broker.address)
        await recorder.start()
        fleet = SimulatedFleet.from_groups(env.broker.address, GROUPS, env.workdir / "devices")
        await fleet.start()
        try:
            ids = {a.device_id for a in fleet.agents}
            await wait_registered(env, ids)
            # every agent reports its class; the controller keeps it per device
            await wait_for_async(lambda: all(d.get("device_class") for d in env.client.devices()),
                                 30, "every device's class", interval=0.2, in_thread=True)
            outputs["list"] = await run_cli(env.url, "devices", "list")
            outputs["refused"] = await run_cli(env.url, "rollout", "start", "iris:1",
                                               "--selector", "hw=cam", "--waves", "100%")
            outputs["dry"] = await run_cli(env.url, "rollout", "start", "iris:1", "--waves",
                                           "1,100%", "--soak", "0s", "--dry-run")
            outputs["rollout"] = await run_cli(
                env.url, "rollout", "start", "iris:1", "--waves", "1,100%", "--soak", "0s",
                "--wait", "--timeout", "60")
            outputs["json"] = await run_cli(env.url, "rollout", "status", "1", "--json")
            pis = [a for a in fleet.agents if a.config.device_class == PI]
            await wait_for_async(lambda: all(a.state == "active" and a.active is not None
                                             for a in pis), 20, "every pi4 device on iris:1",
                                 interval=0.2, in_thread=True)
            # late joiners: the completed rollout sends the new pi4 device the version and
            # records the new camera as skipped
            late = SimulatedFleet.from_groups(env.broker.address, [
                dataclasses.replace(g, count=1) for g in GROUPS], env.workdir / "late",
                prefix="late")
            await late.start()
            try:
                await wait_for_async(
                    lambda: runs_one(late.agent("late-pi-0000")) and "late-cam-0000" in
                    {s["device_id"] for s in env.view(1)["skipped"]}, 30,
                    "the late pi4 device on iris:1 and the late camera skipped", interval=0.2,
                    in_thread=True)
            finally:
                await late.stop(drain_timeout=2)
            devices = await asyncio.to_thread(env.client.devices)
        finally:
            await fleet.stop(drain_timeout=2)
            await recorder.stop()
        return fleet, recorder, devices

    fleet, recorder, devices = asyncio.run(scenario())
    pis = {a.device_id for a in fleet.agents if a.config.device_class == PI}
    cameras = {a.device_id for a in fleet.agents if a.config.device_class == CAMERA}
    assert {d["device_id"]: d["device_class"] for d in devices} == {
        **{d: PI for d in pis}, **{d: CAMERA for d in cameras},
        "late-pi-0000": PI, "late-cam-0000": CAMERA}
    code, out = outputs["list"]
    assert code == 0 and "CLASS" in out and CAMERA in out, out

    # every selected device is a camera: refused in one line, nothing stored or sent
    code, out = outputs["refused"]
    assert code != 0
    assert ("iris:1 is for device class 'pi4', and every one of the 3 selected devices is of "
            "another class ('camera-v2'): nothing to send") in out, out

    code, out = outputs["dry"]
    assert code == 0, out
    assert "skipped 3 devices of another class (other_class: the version is for 'pi4')" in out

    code, out = outputs["rollout"]
    assert code == 0, out[-3000:]
    assert "completed: 3 of 3 devices run iris:1; 3 devices of another class skipped" in out
    view = json.loads(outputs["json"][1])
    assert view["status"] == "completed" and view["device_class"] == PI
    assert view["targets"] == 3 and view["active"] == 3
    assert sum(w["failed"] for w in view["waves"]) == 0
    assert [(s["device_id"], s["device_class"]) for s in view["skipped"]] == \
        [(d, CAMERA) for d in sorted(cameras)]  # as it completed, before the late joiners
    assert all(s["reason"].startswith("other_class: ") for s in view["skipped"])
    assert [r["id"] for r in env.client.rollouts()] == [1]  # the refused one was never stored

    # on the wire: only the pi4 devices were ever told iris:1; the cameras run nothing
    assert recorder.devices_sent("iris", 1) == pis | {"late-pi-0000"}
    assert all(a.active is None for a in fleet.agents if a.device_id in cameras)
    skips = env.client.audit(rollout=1, action="rollout.devices_skipped")["entries"]
    assert [(e["devices"], e["detail"]["skipped"]) for e in skips] == [
        (["late-cam-0000"], {"late-cam-0000": CAMERA})]
    final = env.view(1)
    assert final["status"] == "completed" and final["active"] == 4
    assert sum(w["failed"] for w in final["waves"]) == 0

    # a deployment skips the cameras too, and one of cameras only is refused
    deployed = env.client.deploy("iris", 1)
    assert sorted(deployed["devices"]) == sorted(pis | {"late-pi-0000"})
    assert deployed["device_class"] == PI
    assert [s["device_id"] for s in deployed["skipped"]] == sorted(cameras | {"late-cam-0000"})
    with pytest.raises(ControllerClientError, match="every one of the 3 selected devices"):
        env.client.deploy("iris", 1, sorted(cameras))
