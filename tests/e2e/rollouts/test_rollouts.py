"""Rollouts end to end: a real controller process, real Mosquitto, real agents (SimulatedFleet).

Every scenario records the desired states the broker carries, so "no device outside the first
wave ever receives it" is checked on the wire, not in the controller's own bookkeeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from controller.cli.client import ControllerClientError
from controller.rollouts import initial_state, spec_from_dict
from edge_agent.agent import EdgeAgent
from simulator.fleet import SimulatedFleet
from simulator.workload import Workload, load_dataset
from tests.e2e.rollouts.conftest import SMALL_DEVICE_BYTES, Models
from tests.harness.controller_env import (
    ControllerEnv,
    DesiredRecorder,
    run_cli,
    wait_registered,
    wait_status,
)
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def runs(agent: EdgeAgent, version: int) -> bool:
    return agent.state == "active" and agent.active is not None \
        and (agent.active.model, agent.active.version) == ("iris", version)


async def install(env: ControllerEnv, fleet: SimulatedFleet, version: int) -> int:
    """Put the whole fleet on ``version`` with a one-wave rollout; return its id."""
    view = await asyncio.to_thread(env.create, model="iris", version=version, waves="100%",
                                   soak_seconds=0)
    await wait_status(env, view["id"], {"completed"}, 60)
    await wait_for_async(lambda: all(runs(a, version) for a in fleet.agents), 30,
                   f"every device on iris:{version}", interval=0.2, in_thread=True)
    return int(view["id"])


def audit(env: ControllerEnv, **filters: Any) -> list[dict[str, Any]]:
    return env.client.audit(limit=1000, **filters)["entries"]


def test_good_model_on_100_devices_goes_through_every_wave(env: ControllerEnv,
                                                           models: Models) -> None:
    assert env.push(models.good) == 1

    async def scenario() -> tuple[int, str, SimulatedFleet, DesiredRecorder]:
        recorder = DesiredRecorder(env.broker.address)
        await recorder.start()
        fleet = SimulatedFleet(env.broker.address, 100, env.workdir / "devices")
        await fleet.start()
        workload = Workload(fleet, load_dataset("iris"), rate_per_device=1.0,
                            feedback_delay_s=0.2)
        workload.start()
        try:
            await wait_registered(env, {a.device_id for a in fleet.agents})
            code, out = await run_cli(
                env.url, "rollout", "start", "iris:1", "--waves", "5%,25%,100%", "--soak", "1s",
                "--max-p95-latency-ms", "1000", "--on-gate-failure", "abort", "--wait",
                "--timeout", "90")
            await wait_for_async(lambda: all(runs(a, 1) for a in fleet.agents), 20,
                           "every agent on iris:1", interval=0.2, in_thread=True)
        finally:
            await workload.stop()
            await fleet.stop(drain_timeout=2)
            await recorder.stop()
        return code, out, fleet, recorder

    code, out, fleet, recorder = asyncio.run(scenario())
    assert code == 0, out[-3000:]
    assert "completed: 100 of 100 devices run iris:1" in out
    assert "5/5 active" in out and "20/20 active" in out and "75/75 active" in out
    assert "p95_latency_ms" in out  # the gate's value was shown against its threshold
    view = env.view(1)
    assert view["status"] == "completed"
    assert [(w["devices"], w["active"]) for w in view["waves"]] == [(5, 5), (20, 20), (75, 75)]
    # on the wire: every device was told iris:1 by this rollout, and nothing else
    assert recorder.devices_sent("iris", 1) == {a.device_id for a in fleet.agents}
    assert {(s.model, s.version, s.deployment_id) for s in recorder.sent} == {("iris", 1, "ro-1")}
    starts = [e for e in reversed(audit(env, rollout=1, action="rollout.wave_started"))]
    assert [(e["detail"]["wave"], len(e["devices"])) for e in starts] == [(1, 5), (2, 20), (3, 75)]
    # a wave starts only after the previous one soaked
    soaks = [e for e in reversed(audit(env, rollout=1, action="rollout.soak_started"))]
    assert soaks[0]["id"] < starts[1]["id"] and soaks[1]["id"] < starts[2]["id"]
    assert soaks[0]["ts"] + 1.0 <= starts[1]["ts"] and soaks[1]["ts"] + 1.0 <= starts[2]["ts"]


def test_model_that_fails_activation_on_part_of_the_fleet_stops_in_the_first_wave(
        env: ControllerEnv, models: Models) -> None:
    assert env.push(models.good) == 1
    assert env.push(models.big) == 2
    ids = [f"sim-{i:04d}" for i in range(40)]
    spec = {"model": "iris", "version": 2, "waves": "5%,25%,100%", "soak_seconds": 3,
            "on_gate_failure": "abort"}
    plan = initial_state(spec_from_dict(spec), ids).assignment
    first = sorted(d for d, w in plan.items() if w == 0)
    later = sorted(d for d, w in plan.items() if w > 0)
    # one canary and eight later devices are small boards that cannot take a 33 KB model
    small = {first[0], *later[:8]}

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], SimulatedFleet,
                                  DesiredRecorder]:
        fleet = SimulatedFleet(env.broker.address, 40, env.workdir / "devices")
        fleet.agents = [EdgeAgent(dataclasses.replace(a.config, max_model_bytes=SMALL_DEVICE_BYTES))
                        if a.device_id in small else a for a in fleet.agents]
        recorder = DesiredRecorder(env.broker.address)
        await recorder.start()
        await fleet.start()
        try:
            await wait_registered(env, set(ids))
            await install(env, fleet, 1)
            dry = await asyncio.to_thread(env.client.create_rollout, spec, True)
            started = await asyncio.to_thread(env.client.create_rollout, spec)
            final = await wait_status(env, started["id"], {"aborted", "failed", "completed",
                                                           "paused"}, 60)
            await wait_for_async(lambda: all(runs(fleet.agent(d), 1) for d in first), 20,
                           "the first wave back on iris:1", interval=0.2, in_thread=True)
        finally:
            await fleet.stop(drain_timeout=2)
            await recorder.stop()
        return dry, final, fleet, recorder

    dry, final, fleet, recorder = asyncio.run(scenario())
    assert dry["waves"][0]["device_ids"] == first  # the controller plans what the engine plans
    assert final["status"] == "aborted", final["reasons"]
    assert any(r.startswith("abort (failed_activations 1 vs threshold 0") for r in final["reasons"])
    # on the wire: only the first wave was ever told iris:2; it was then told iris:1 again
    assert recorder.devices_sent("iris", 2) == set(first)
    reverts = {s.device_id for s in recorder.sent if s.deployment_id == f"ro-{final['id']}-revert"}
    assert reverts == set(first) and recorder.devices_sent("iris", 1) >= set(first)
    assert all(runs(a, 1) for a in fleet.agents)  # everyone runs the old version
    assert fleet.agent(first[0]).last_error is None  # the revert cleared the failure
    aborted = audit(env, rollout=final["id"], action="rollout.aborted")
    assert len(aborted) == 1 and aborted[0]["devices"] == first
    assert aborted[0]["detail"]["gate"] == "failed_activations"
    assert audit(env, rollout=final["id"], action="rollout.reverted")


@pytest.mark.parametrize("window", [
    pytest.param(60.0, id="figures-from-raw-telemetry"),  # no metrics window closes in time
    pytest.param(0.5, id="figures-from-metrics-windows"),  # the agents' window summaries
])
def test_less_accurate_model_is_aborted_by_the_accuracy_gate(env: ControllerEnv, models: Models,
                                                             window: float) -> None:
    assert env.push(models.good) == 1
    assert env.push(models.shuffled) == 2

    async def scenario() -> tuple[dict[str, Any], SimulatedFleet, DesiredRecorder]:
        fleet = SimulatedFleet(env.broker.address, 20, env.workdir / "devices",
                               metrics_window_s=window)
        recorder = DesiredRecorder(env.broker.address)
        await recorder.start()
        await fleet.start()
        workload = Workload(fleet, load_dataset("iris"), rate_per_device=5.0,
                            feedback_delay_s=0.2)
        try:
            await wait_registered(env, {a.device_id for a in fleet.agents})
            await install(env, fleet, 1)
            workload.start()
            await asyncio.sleep(3)  # labelled feedback on iris:1: the baseline
            started = await asyncio.to_thread(env.create, model="iris", version=2,
                                              waves="25%,100%", soak_seconds=60,
                                              gates={"max_accuracy_drop": 0.1,
                                                     "min_labelled": 30},
                                              on_gate_failure="abort")
            final = await wait_status(env, started["id"], {"aborted", "failed", "completed",
                                                           "paused"}, 60)
            first = recorder.devices_sent("iris", 2)
            await wait_for_async(lambda: all(runs(fleet.agent(d), 1) for d in first), 20,
                           "the first wave back on iris:1", interval=0.2, in_thread=True)
        finally:
            await workload.stop()
            await fleet.stop(drain_timeout=2)
            await recorder.stop()
        return final, fleet, recorder

    final, fleet, recorder = asyncio.run(scenario())
    assert final["status"] == "aborted", final["reasons"]
    aborted = audit(env, rollout=final["id"], action="rollout.aborted")[0]
    assert aborted["detail"]["gate"] == "accuracy_drop"
    assert aborted["detail"]["value"] > 0.3  # 97% -> about 17%
    assert len(recorder.devices_sent("iris", 2)) == 5  # the first wave (25% of 20) only
    assert set(aborted["devices"]) == recorder.devices_sent("iris", 2)
    assert all(runs(a, 1) for a in fleet.agents)


def test_controller_killed_mid_rollout_continues_and_completes(env: ControllerEnv,
                                                               models: Models) -> None:
    assert env.push(models.good) == 1
    assert env.push(models.good2) == 2

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], SimulatedFleet,
                                  DesiredRecorder]:
        fleet = SimulatedFleet(env.broker.address, 30, env.workdir / "devices")
        recorder = DesiredRecorder(env.broker.address)
        await recorder.start()
        await fleet.start()
        try:
            await wait_registered(env, {a.device_id for a in fleet.agents})
            await install(env, fleet, 1)
            started = await asyncio.to_thread(env.create, model="iris", version=2,
                                              waves="10%,50%,100%", soak_seconds=2,
                                              on_gate_failure="abort")
            rid = started["id"]
            before = await wait_for_async(lambda: (v := env.view(rid))["wave"] == 2 and v, 30,
                                    "the second wave to start", interval=0.2, in_thread=True)
            env.kill()
            await asyncio.sleep(1.0)  # the fleet goes on without a controller for a moment
            await asyncio.to_thread(env.start)
            final = await wait_status(env, rid, {"completed", "aborted", "failed", "paused"}, 60)
            await wait_for_async(lambda: all(runs(a, 2) for a in fleet.agents), 20,
                           "every agent on iris:2", interval=0.2, in_thread=True)
        finally:
            await fleet.stop(drain_timeout=2)
            await recorder.stop()
        return before, final, fleet, recorder

    before, final, fleet, recorder = asyncio.run(scenario())
    assert before["status"] in ("running", "soaking")
    assert final["status"] == "completed", final["reasons"]
    assert [(w["devices"], w["active"]) for w in final["waves"]] == [(3, 3), (12, 12), (15, 15)]
    # never a contradictory order: iris:2 from this rollout, no revert, nothing else
    rollout_orders = {(s.model, s.version, s.deployment_id) for s in recorder.sent
                      if s.deployment_id.startswith(f"ro-{final['id']}")}
    assert rollout_orders == {("iris", 2, f"ro-{final['id']}")}
    assert recorder.devices_sent("iris", 2) == {a.device_id for a in fleet.agents}
    starts = audit(env, rollout=final["id"], action="rollout.wave_started")
    assert sorted(e["detail"]["wave"] for e in starts) == [1, 2, 3]  # no wave started twice
    assert not audit(env, rollout=final["id"], action="rollout.aborted")


def test_devices_that_join_after_the_start_get_the_version(env: ControllerEnv,
                                                           models: Models) -> None:
    assert env.push(models.good) == 1
    # late-0001 says site=lisbon in its own configuration; the operator's label wins
    env.client.register("late-0001", {"site": "berlin"}, "shipped to berlin")

    async def scenario() -> tuple[dict[str, Any], list[SimulatedFleet]]:
        fleet = SimulatedFleet(env.broker.address, 10, env.workdir / "devices")
        late = SimulatedFleet(env.broker.address, 2, env.workdir / "late", prefix="late")
        later = SimulatedFleet(env.broker.address, 2, env.workdir / "later", prefix="later")
        await fleet.start()
        try:
            await wait_registered(env, {a.device_id for a in fleet.agents})
            started = await asyncio.to_thread(env.create, model="iris", version=1,
                                              selector="site=berlin", waves="1,100%",
                                              soak_seconds=2)
            assert started["targets"] == 4  # sim-0000, -0003, -0006, -0009
            await late.start()  # during the first wave's soak
            final = await wait_status(env, started["id"], {"completed", "paused", "aborted"}, 60)
            await wait_for_async(lambda: all(runs(a, 1) for a in late.agents), 20,
                           "the late joiners on iris:1", interval=0.2, in_thread=True)
            await later.start()  # after the rollout completed
            await wait_for_async(lambda: runs(later.agent("later-0000"), 1), 20,
                           "a device joining after completion on iris:1", interval=0.2, in_thread=True)
            await asyncio.sleep(1.5)  # later-0001 (site=lisbon) must stay without a model
            view = await asyncio.to_thread(env.view, started["id"])
        finally:
            for f in (fleet, late, later):
                await f.stop(drain_timeout=1)
        assert final["status"] == "completed", final["reasons"]
        return view, [fleet, late, later]

    view, (fleet, late, later) = asyncio.run(scenario())
    assert view["targets"] == 7 and view["active"] == 7
    assert later.agent("later-0001").active is None
    berlin = {a.device_id for a in fleet.agents if a.config.labels["site"] == "berlin"}
    assert all(runs(fleet.agent(d), 1) for d in berlin)
    assert all(fleet.agent(d).active is None for d in {a.device_id for a in fleet.agents} - berlin)
    joined = [e for e in audit(env, action="rollout.late_joiners") if "late-0001" in e["devices"]]
    assert joined, "late-0001 was admitted as a late joiner"
    shown = env.client.device("late-0001")
    assert shown["labels"]["site"] == "berlin" and shown["device_labels"]["site"] == "lisbon"


BAD_SPECS: list[tuple[dict[str, Any], int, str]] = [
    ({"version": 9}, 404, "model version 'iris:9' not found"),
    ({"selector": "site=atlantis"}, 422, "selector 'site=atlantis' matches no devices"),
    ({"selector": "site="}, 422, "expected label value at position 5"),
    ({"waves": "5%,25%"}, 422, "last wave (25%) does not cover the fleet"),
    ({"waves": "50%,25%,100%"}, 422, "waves must be strictly increasing"),
    ({"waves": "1,2,3,4,5,6,7"}, 422, "7 waves need at least 7 devices, the selector matches 5"),
    ({"gates": {"max_accuracy_drop": 1.5}}, 422, "gates.max_accuracy_drop: 1.5 is outside [0, 1]"),
    ({"gates": {"min_reporting_share": 2}}, 422,
     "gates.min_reporting_share: 2.0 is outside [0, 1]"),
    ({"gates": {"max_p95_latency_ms": -1}}, 422, "gates.max_p95_latency_ms: must be > 0"),
    ({"soak_seconds": -5}, 422, "soak_seconds: must be >= 0"),
    ({"gates": {"max_accuracy": 0.1}}, 422, "unknown key(s) 'max_accuracy' in gates"),
]
# the same refusals through the CLI flags
BAD_CLI: list[tuple[list[str], str]] = [
    (["iris:9"], "404: model version 'iris:9' not found"),
    (["iris:1", "--selector", "site=atlantis"], "matches no devices"),
    (["iris:1", "--waves", "5%,25%"], "last wave (25%) does not cover the fleet"),
    (["iris:1", "--max-accuracy-drop", "1.5"], "gates.max_accuracy_drop: 1.5 is outside [0, 1]"),
    (["iris:1", "--min-reporting", "200%"], "gates.min_reporting_share: 2.0 is outside [0, 1]"),
]


def test_bad_specs_are_refused_before_anything_is_sent(env: ControllerEnv,
                                                       models: Models) -> None:
    assert env.push(models.good) == 1

    async def scenario() -> tuple[list[str], DesiredRecorder, list[tuple[int, str]]]:
        recorder = DesiredRecorder(env.broker.address)
        await recorder.start()
        fleet = SimulatedFleet(env.broker.address, 5, env.workdir / "devices")
        await fleet.start()
        errors, outputs = [], []
        try:
            await wait_registered(env, {a.device_id for a in fleet.agents})
            for spec, _, _ in BAD_SPECS:
                body = {"model": "iris", "version": 1, "waves": "1,100%", **spec}
                with pytest.raises(ControllerClientError) as refused:
                    await asyncio.to_thread(env.client.create_rollout, body)
                errors.append(str(refused.value))
            for args, _ in BAD_CLI:
                outputs.append(await run_cli(env.url, "rollout", "start", *args, "--wait"))
            await asyncio.sleep(1.0)  # a rollout loop tick would have sent something by now
        finally:
            await fleet.stop(drain_timeout=1)
            await recorder.stop()
        return errors, recorder, outputs

    errors, recorder, outputs = asyncio.run(scenario())
    for (_, status, message), error in zip(BAD_SPECS, errors, strict=True):
        assert error.startswith(f"{status}:") and message in error, (message, error)
    for (_, message), (code, out) in zip(BAD_CLI, outputs, strict=True):
        assert code == 1 and message in out, (message, out)
    assert recorder.sent == []
    assert env.client.rollouts() == []
    assert not audit(env, action="rollout.")
