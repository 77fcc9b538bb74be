"""Experiments end to end: a real controller process, real Mosquitto, real agents (SimulatedFleet)
that verify the signed candidate and download it through the chunked path.

- a shadow of a truly better candidate is declared better within the rows its design predicts;
  the shadowed device's served answers equal, row by row, those of a device without the shadow;
  promoting it starts a rollout that completes;
- an A/B split by device of a truly better candidate is declared the same way, through a
  device crash and restart and a controller crash;
- bad input is refused before anything is sent, with a one-line reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import numpy as np
import pytest

from controller.cli.client import ControllerClientError
from edge_agent.agent import EdgeAgent
from simulator.fleet import SimulatedFleet
from simulator.keys import controller_trusted_keys
from simulator.workload import Workload, load_dataset
from tests.e2e.rollouts.conftest import Models
from tests.harness.controller_env import ControllerEnv, run_cli, wait_registered, wait_status
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def runs(agent: EdgeAgent, version: int) -> bool:
    return agent.state == "active" and agent.active is not None \
        and (agent.active.model, agent.active.version) == ("iris", version)


def fleet_of(env: ControllerEnv, size: int) -> SimulatedFleet:
    return SimulatedFleet(env.broker.address, size, env.workdir / "devices",
                          trusted_keys=controller_trusted_keys(env.workdir / "controller"),
                          metrics_window_s=1.0, telemetry_flush_interval_s=0.1)


async def install(env: ControllerEnv, fleet: SimulatedFleet, version: int) -> None:
    view = await asyncio.to_thread(env.create, model="iris", version=version, waves="100%",
                                   soak_seconds=0)
    await wait_status(env, view["id"], {"completed"}, 60)
    await wait_for_async(lambda: all(runs(a, version) for a in fleet.agents), 30,
                         f"every device on iris:{version}", interval=0.2, in_thread=True)


async def wait_verdict(env: ControllerEnv, experiment_id: str, timeout: float) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def decided() -> dict[str, Any] | None:
        nonlocal last
        last = env.client.experiment(experiment_id)
        return last if last["verdict"] != "running" else None

    try:
        return await wait_for_async(decided, timeout, f"a verdict in {experiment_id}",
                                    interval=0.5, in_thread=True)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last view: {json.dumps(last)[:3000]}\n{env.log()}") \
            from None


def served(agent: EdgeAgent, rows: np.ndarray) -> list[bytes]:
    """Every served answer but its id, one per row, as bytes."""
    return [json.dumps([p.label, p.scores, p.model, p.version]).encode()
            for i in range(len(rows)) for p in agent.predict(rows[i])]


def test_a_better_shadow_is_declared_never_changes_an_answer_and_is_promoted(
        env: ControllerEnv, models: Models) -> None:
    assert env.push(models.shuffled) == 1  # served: wrong most of the time
    assert env.push(models.good) == 2  # the candidate: right most of the time
    data = load_dataset("iris")

    async def scenario() -> tuple[str, str, dict[str, Any], list[bytes], list[bytes],
                                  dict[str, Any], SimulatedFleet]:
        fleet = fleet_of(env, 3)  # sim-0000 in berlin, sim-0001 in lisbon, sim-0002 in oslo
        await fleet.start()
        workload = Workload(fleet, data, rate_per_device=40.0, feedback_delay_s=0.1)
        try:
            await wait_registered(env, {a.device_id for a in fleet.agents})
            await install(env, fleet, 1)
            code, out = await run_cli(env.url, "experiment", "start", "--shadow", "iris:2",
                                      "--against", "iris:1", "--selector", "site=berlin",
                                      "--sample", "100%", "--json")
            assert code == 0, out
            experiment_id = json.loads(out)["id"]
            shadowed, plain = fleet.agent("sim-0000"), fleet.agent("sim-0001")
            await wait_for_async(lambda: shadowed.experiment is not None, 30,
                                 "the candidate loaded beside the served model", interval=0.2)
            assert plain.experiment is None
            # row by row: the shadowed device answers exactly as the device without a shadow
            with_shadow, without = served(shadowed, data.features), served(plain, data.features)
            workload.start()
            verdict = await wait_verdict(env, experiment_id, 90)
            _, status_text = await run_cli(env.url, "experiment", "status", experiment_id)
            promoted = await asyncio.to_thread(env.client.promote_experiment, experiment_id,
                                               {"waves": "100%", "soak_seconds": 0})
            await wait_status(env, promoted["rollout"]["id"], {"completed"}, 60)
            await wait_for_async(lambda: runs(shadowed, 2), 30, "berlin on iris:2",
                                 interval=0.2, in_thread=True)
            await wait_for_async(lambda: shadowed.experiment is None, 30,
                                 "the shadow dropped after the stop order", interval=0.2)
        finally:
            await workload.stop()
            await fleet.stop(drain_timeout=2)
        return experiment_id, status_text, verdict, with_shadow, without, promoted, fleet

    experiment_id, text, verdict, with_shadow, without, promoted, fleet = asyncio.run(scenario())
    assert with_shadow == without and len(with_shadow) == len(data.target)
    comparison = verdict["comparison"]
    assert verdict["verdict"] == "candidate_better", comparison
    assert comparison["paired"] and comparison["low"] > 0
    assert comparison["rows"] <= comparison["predicted_rows"]
    assert verdict["shadow"]["compared"] > 0 and verdict["shadow"]["agreement"] < 0.9
    assert verdict["devices"]["both"] == ["sim-0000"]
    assert verdict["arms"]["candidate"]["latency_p95_ms"] is not None
    assert "candidate_better" in text and "ALWAYS-VALID CI" in text
    assert promoted["status"] == "promoted" and promoted["rollout"]["version"] == 2
    assert runs(fleet.agent("sim-0001"), 1)  # outside the selector: never touched
    actions = [e["action"] for e in env.client.audit(limit=100)["entries"]]
    assert "experiment.started" in actions and "experiment.promoted" in actions


def test_an_ab_split_by_device_declares_the_better_candidate(env: ControllerEnv,
                                                             models: Models) -> None:
    assert env.push(models.shuffled) == 1
    assert env.push(models.good) == 2

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], SimulatedFleet]:
        fleet = fleet_of(env, 4)
        await fleet.start()
        workload = Workload(fleet, load_dataset("iris"), rate_per_device=40.0,
                            feedback_delay_s=0.1)
        try:
            await wait_registered(env, {a.device_id for a in fleet.agents})
            await install(env, fleet, 1)
            started = await asyncio.to_thread(env.client.start_experiment, {
                "mode": "ab", "candidate": "iris:2", "control": "iris:1", "share": "50%"})
            workload.start()
            # a candidate device crashes and comes back: the retained order reaches it again and
            # it runs the candidate from its slot, without downloading it again
            crashed = started["devices"]["candidate"][0]
            await wait_for_async(lambda: fleet.agent(crashed).experiment is not None, 30,
                                 "the candidate loaded", interval=0.2)
            fleet.kill(crashed)
            revived = await fleet.restart(crashed)
            await wait_for_async(lambda: revived.experiment is not None, 30,
                                 "the candidate back after the restart", interval=0.2)
            assert revived.experiments.fetch.download is None  # found verified on disk
            verdict = await wait_verdict(env, started["id"], 90)
            # the experiment survives a controller crash: everything is recomputed from the
            # stored windows
            await asyncio.to_thread(env.kill)
            await asyncio.to_thread(env.start)
            after_restart = await wait_verdict(env, started["id"], 30)
        finally:
            await workload.stop()
            await fleet.stop(drain_timeout=2)
        return verdict, after_restart, fleet

    verdict, after_restart, fleet = asyncio.run(scenario())
    assert len(verdict["devices"]["candidate"]) == 2 and len(verdict["devices"]["control"]) == 2
    assert verdict["verdict"] == "candidate_better", verdict["comparison"]
    assert verdict["comparison"]["rows"] <= verdict["comparison"]["predicted_rows"]
    assert not verdict["comparison"]["paired"]
    assert verdict["arms"]["candidate"]["accuracy"] > verdict["arms"]["control"]["accuracy"]
    # the served model never changed: the candidate served beside it, by the order
    assert all(runs(a, 1) for a in fleet.agents)
    assert after_restart["verdict"] == verdict["verdict"]
    assert after_restart["arms"]["candidate"]["labelled"] >= \
        verdict["arms"]["candidate"]["labelled"]


def test_bad_input_is_refused_before_anything_is_sent(env: ControllerEnv,
                                                      models: Models) -> None:
    assert env.push(models.good) == 1
    assert env.push(models.good2) == 2

    async def scenario() -> list[tuple[int, str]]:
        fleet = fleet_of(env, 2)
        await fleet.start()
        try:
            await wait_registered(env, {a.device_id for a in fleet.agents})
            await install(env, fleet, 1)
            outcomes = [await run_cli(env.url, "experiment", "start", *args) for args in (
                ("--shadow", "iris:1", "--against", "iris:1"),
                ("--ab", "iris:2", "--against", "iris:1", "--share", "150%"),
                ("--ab", "iris:2", "--against", "iris:1", "--share", "-1%"),
            )]
            # a live rollout holds the devices: refused, naming it
            await asyncio.to_thread(env.create, model="iris", version=2, waves="1,100%",
                                    soak_seconds=3600)
            outcomes.append(await run_cli(env.url, "experiment", "start", "--shadow", "iris:2",
                                          "--against", "iris:1"))
            assert all(a.experiment is None for a in fleet.agents)
        finally:
            await fleet.stop(drain_timeout=2)
        return outcomes

    outcomes = asyncio.run(scenario())
    same, above, below, busy = outcomes
    assert same[0] != 0 and "the two arms are the same version iris:1" in same[1]
    assert above[0] != 0 and "outside 0-100%" in above[1]
    assert below[0] != 0 and "outside 0-100%" in below[1]
    assert busy[0] != 0 and "in a live rollout" in busy[1]
    for _, out in outcomes:
        assert len([line for line in out.splitlines() if line.startswith("error")]) == 1
    with pytest.raises(ControllerClientError):
        env.client.experiment("exp-00000000")
    assert env.client.experiments() == []


def test_a_device_that_cannot_hold_two_sessions_refuses_with_the_reason(
        env: ControllerEnv, models: Models) -> None:
    assert env.push(models.good) == 1
    assert env.push(models.good2) == 2

    async def scenario() -> tuple[dict[str, Any], SimulatedFleet]:
        fleet = fleet_of(env, 2)
        small = fleet.agent("sim-0001")
        # a board whose budget for models is below two sessions (the candidate's artifact alone)
        fleet.agents = [EdgeAgent(dataclasses.replace(
            small.config, model_memory_bytes=models.good2.manifest.artifact.size // 2))
            if a is small else a for a in fleet.agents]
        await fleet.start()
        try:
            await wait_registered(env, {a.device_id for a in fleet.agents})
            await install(env, fleet, 1)
            started = await asyncio.to_thread(env.client.start_experiment, {
                "mode": "shadow", "candidate": "iris:2", "control": "iris:1"})
            await wait_for_async(lambda: fleet.agent("sim-0000").experiment is not None, 30,
                                 "the roomy device running the shadow", interval=0.2)
            view = await wait_for_async(
                lambda: (v := env.client.experiment(started["id"]))["refused"] and v, 30,
                "the refusal reported", interval=0.3, in_thread=True)
            # the refusing device serves its model as before
            assert runs(fleet.agent("sim-0001"), 1)
            assert fleet.agent("sim-0001").predict([5.1, 3.5, 1.4, 0.2])[0].version == 1
        finally:
            await fleet.stop(drain_timeout=2)
        return view, fleet

    view, fleet = asyncio.run(scenario())
    assert list(view["refused"]) == ["sim-0001"]
    assert "cannot hold two sessions" in view["refused"]["sim-0001"]
    assert fleet.agent("sim-0001").experiment is None
