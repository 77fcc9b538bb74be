"""The agent's update path with signatures, probation and rollback, in process.

A real EdgeAgent on the real broker, enforcing signatures; the test signs what it publishes as
the controller does. Process kills (SIGKILL in every state) are in tests/update_e2e; here the
agent is stopped as a crash would stop it (``kill()``: no flush, no goodbye).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.update import UpdateState, UpdateStep
from edge_agent.update_journal import UpdateJournal
from edgewise_wire import ModelRef, ProbationPolicy, decode
from edgewise_wire.order_messages import Desired
from simulator.broker import BrokerProcess
from tests.harness.agents import Signer
from tests.harness.fake_controller import (
    Artifact,
    FakeController,
    agent_and_controller,
    agent_config,
    model_files,
)
from tests.harness.iris_models import IrisModels
from tests.harness.signed_desired import publish_signed
from tests.harness.waiting import wait_for_async

pytestmark = pytest.mark.broker

KEY = Signer.generate()
TRUST = {"trusted_keys": (KEY.public_pem.decode(),)}


def _ref(artifact: Artifact) -> ModelRef:
    m = artifact.manifest
    return ModelRef(m.model, m.version, m.artifact.sha256)


def _runs(agent: EdgeAgent, artifact: Artifact, state: str = "active") -> bool:
    return agent.state == state and agent.active == _ref(artifact)


async def _install(agent: EdgeAgent, ctl: FakeController, artifact: Artifact,
                   **kwargs: object) -> None:
    ctl.serve(artifact.manifest.artifact, artifact.data)
    await publish_signed(ctl, KEY, artifact.manifest,
                         deployment_id=f"dep-{artifact.manifest.version}", **kwargs)  # type: ignore[arg-type]


async def _activate(agent: EdgeAgent, ctl: FakeController, artifact: Artifact) -> None:
    """Install ``artifact`` signed, without probation, and wait until it is committed."""
    await _install(agent, ctl, artifact)
    await _wait_runs(agent, artifact)


async def _wait_runs(agent: EdgeAgent, artifact: Artifact, state: str = "active",
                     timeout: float = 15.0) -> None:
    await wait_for_async(lambda: _runs(agent, artifact, state), timeout,
                     f"{artifact.manifest.model}:{artifact.manifest.version} {state} "
                     f"(state {agent.state}, active {agent.active}, error {agent.last_error})")


def _pointer(agent: EdgeAgent) -> dict:
    return json.loads((agent.config.data_dir / "active.json").read_text())


def test_a_signed_update_goes_through_every_state_and_keeps_the_previous_slot(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    a, b = iris_models.a, iris_models.b

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "dev", **TRUST) as (agent, ctl):
            await _activate(agent, ctl, a)
            await _install(agent, ctl, b, probation=ProbationPolicy(1.0))
            await _wait_runs(agent, b, "probation")
            agent.predict(iris_models.rows[:5])  # served by the new model, under probation
            await _wait_runs(agent, b)
            states = [r.state for r in ctl.reported]
            expected = ["downloading", "verifying", "staged", "activating", "probation", "active"]
            seen = iter(states[states.index("downloading"):])
            assert all(s in seen for s in expected), states  # in this order
            await wait_for_async(lambda: ctl.last_reported is not None
                             and ctl.last_reported.state == "active"
                             and ctl.last_reported.active == _ref(b), 5, "active reported")
            assert ctl.last_reported is not None and ctl.last_reported.previous == _ref(a)
            pointer = _pointer(agent)
            assert pointer["file"] == f"{b.manifest.artifact.sha256}.onnx"
            assert pointer["previous"]["file"] == f"{a.manifest.artifact.sha256}.onnx"
            assert model_files(agent) == {pointer["file"], pointer["previous"]["file"]}

    asyncio.run(scenario())


def test_a_model_too_slow_in_probation_rolls_back_and_says_why(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    a, b = iris_models.a, iris_models.b

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "dev", **TRUST) as (agent, ctl):
            await _activate(agent, ctl, a)
            await _install(agent, ctl, b, probation=ProbationPolicy(
                1.5, max_p95_latency_ms=1e-6, min_predictions=3))
            await _wait_runs(agent, b, "probation")
            for _ in range(5):
                agent.predict(iris_models.rows[:2])
            await _wait_runs(agent, a, "rolled_back")
            assert agent.last_error is not None and "too slow in probation" in agent.last_error
            assert [p.label for p in agent.predict(iris_models.rows[:4])] == \
                iris_models.labels_a[:4]
            await wait_for_async(lambda: ctl.last_reported is not None
                             and ctl.last_reported.state == "rolled_back", 5, "reported")
            assert ctl.last_reported is not None
            assert "too slow" in (ctl.last_reported.last_error or "")
            assert ctl.last_reported.active == _ref(a)
            assert model_files(agent) == {f"{a.manifest.artifact.sha256}.onnx"}

    asyncio.run(scenario())


def test_an_ordered_rollback_uses_the_previous_slot_without_a_download(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    a, b = iris_models.a, iris_models.b

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "dev", **TRUST) as (agent, ctl):
            await _activate(agent, ctl, a)
            await _activate(agent, ctl, b)
            requests = len(ctl.requests)
            # a downgrade without an order is refused; b keeps serving
            await publish_signed(ctl, KEY, a.manifest, deployment_id="dep-back")
            await wait_for_async(lambda: agent.state == "failed", 10, "the refusal")
            assert "rollback order" in (agent.last_error or "") and agent.active == _ref(b)
            # with a signed order: back on a at once, from the slot kept on disk
            await publish_signed(ctl, KEY, a.manifest, deployment_id="dep-back-2",
                                 rollback_to=a.manifest.version)
            await _wait_runs(agent, a)
            assert len(ctl.requests) == requests, "the rollback downloaded the model again"
            assert agent.last_error is None
            assert [p.label for p in agent.predict(iris_models.rows[:4])] == \
                iris_models.labels_a[:4]

    asyncio.run(scenario())


def test_a_version_withdrawn_during_probation_is_rolled_back(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    a, b = iris_models.a, iris_models.b

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "dev", **TRUST) as (agent, ctl):
            await _activate(agent, ctl, a)
            await _install(agent, ctl, b, probation=ProbationPolicy(60.0))
            await _wait_runs(agent, b, "probation")
            await publish_signed(ctl, KEY, a.manifest, deployment_id="dep-revert",
                                 rollback_to=a.manifest.version)
            await _wait_runs(agent, a, timeout=10)  # long before the 60 s window ends
            assert _pointer(agent)["file"] == f"{a.manifest.artifact.sha256}.onnx"

    asyncio.run(scenario())


def test_unloading_needs_a_signed_order(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    a = iris_models.a

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "dev", **TRUST) as (agent, ctl):
            await _activate(agent, ctl, a)
            await publish_signed(ctl, KEY, None, deployment_id="dep-none")
            await wait_for_async(lambda: agent.state == "failed", 10, "the refusal")
            assert agent.active == _ref(a) and "to version 0" in (agent.last_error or "")
            await publish_signed(ctl, KEY, None, deployment_id="dep-none-2", rollback_to=0)
            await wait_for_async(lambda: agent.state == "idle" and agent.active is None, 10,
                             "the unload")

    asyncio.run(scenario())


def test_a_crash_in_probation_restarts_the_window_and_commits(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    a, b = iris_models.a, iris_models.b
    data_dir = tmp_path / "dev"

    async def scenario() -> str:
        async with agent_and_controller(broker, data_dir, **TRUST) as (agent, ctl):
            await _activate(agent, ctl, a)
            await _install(agent, ctl, b, probation=ProbationPolicy(1.0))
            await _wait_runs(agent, b, "probation")
            agent.kill()  # as a power cut: the window is lost, the journal is not
            again = EdgeAgent(agent_config(broker, data_dir, agent.device_id, **TRUST))
            await again.start()
            try:
                assert again.active == _ref(b)  # the new slot serves from the first instant
                await _wait_runs(again, b)
            finally:
                await again.stop()
            return agent.device_id

    asyncio.run(scenario())
    step, _ = _journal(data_dir)
    assert step.state is UpdateState.ACTIVE and step.attempts_in(UpdateState.PROBATION) == 2


def test_a_crash_right_after_the_switch_serves_the_previous_slot_and_activates_again(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    """The pointer already names the new model but the journal still says ACTIVATING: the
    previous slot is authoritative, so the agent points back at it and activates again."""
    a, b = iris_models.a, iris_models.b
    data_dir = tmp_path / "dev"

    async def scenario() -> None:
        async with agent_and_controller(broker, data_dir, **TRUST) as (agent, ctl):
            await _activate(agent, ctl, a)
            await _activate(agent, ctl, b)
            agent.kill()
            _, desired = _journal(data_dir)
            UpdateJournal(data_dir / "update.json").save(
                UpdateStep(UpdateState.ACTIVATING, target=_ref(b), previous=_ref(a),
                           entered_at=time.time(), attempts=((UpdateState.ACTIVATING, 1),)), desired)
            again = EdgeAgent(agent_config(broker, data_dir, agent.device_id, **TRUST))
            await again.start()
            try:
                await _wait_runs(again, b)
                assert _pointer(again)["previous"]["file"] == f"{a.manifest.artifact.sha256}.onnx"
            finally:
                await again.stop()

    asyncio.run(scenario())
    step, _ = _journal(data_dir)
    # entered once, resumed once after the crash
    assert step.state is UpdateState.ACTIVE and step.attempts_in(UpdateState.ACTIVATING) == 2


def _journal(data_dir: Path) -> tuple[UpdateStep, Desired | None]:
    raw = json.loads((data_dir / "update.json").read_text())
    desired = raw["desired"]
    return (UpdateStep.from_dict(raw["step"]),
            decode(json.dumps(desired).encode(), Desired) if desired else None)


def test_an_update_whose_manifest_expired_while_the_device_was_off_is_not_resumed(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    from edge_agent.update.pause import UpdatePause

    a, b = iris_models.a, iris_models.b  # b spans several chunks
    data_dir = tmp_path / "dev"

    async def scenario() -> None:
        async with agent_and_controller(broker, data_dir, **TRUST) as (agent, ctl):
            await _activate(agent, ctl, a)
        # the device powers up, takes an update valid for 2 s, and loses power mid-download
        ctl = FakeController(broker.address, agent.device_id)
        await ctl.start()
        try:
            paused = EdgeAgent(agent_config(broker, data_dir, agent.device_id, **TRUST),
                               pause=UpdatePause.parse("downloading:1"))
            await paused.start()
            ctl.serve(b.manifest.artifact, b.data)
            await publish_signed(ctl, KEY, b.manifest, deployment_id="dep-short",
                                 expires_in=2.0)
            await wait_for_async(lambda: (data_dir / "paused-in").exists(), 10, "the pause")
            paused.kill()
            # it comes back after longer than the manifest is valid: its clock says so (the
            # agent takes its wall clock as an argument), no test has to wait that long
            again = EdgeAgent(agent_config(broker, data_dir, agent.device_id, **TRUST),
                              clock=lambda: time.time() + 2.5)
            await again.start()
            try:
                assert again.state == "failed" and again.active == _ref(a)
                assert "not resumed" in (again.last_error or "") and \
                    "expired" in (again.last_error or "")
                assert [p.label for p in again.predict(iris_models.rows[:4])] == \
                    iris_models.labels_a[:4]
            finally:
                await again.stop()
        finally:
            await ctl.stop()

    asyncio.run(scenario())
