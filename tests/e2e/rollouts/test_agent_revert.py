"""What the agent does with the orders a rollout's abort sends: back to the active model while
an update is in flight, and "run no model" (``manifest: null``); and the ``max_model_bytes``
check that makes a model fail activation on small devices."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from edge_agent.agent import EdgeAgent, NoActiveModel
from edgewise_wire import ArtifactRef
from simulator.broker import BrokerProcess
from tests.e2e.rollouts.conftest import Models
from tests.harness.fake_controller import Artifact, activate, agent_and_controller, agent_config
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker]


@pytest.fixture(scope="module")
def artifacts(models: Models) -> tuple[Artifact, Artifact]:
    """v1: the small logistic regression; v2: the forest, in 1 KiB chunks (a slow download)."""
    a = Artifact(dataclasses.replace(models.good.manifest, version=1), models.good.artifact)
    big = models.big
    b = Artifact(dataclasses.replace(big.manifest, version=2,
                                     artifact=ArtifactRef.describe(big.artifact, 1024)),
                 big.artifact)
    return a, b


def test_no_model_desired_unloads_and_stays_unloaded(broker: BrokerProcess, tmp_path: Path,
                                                     artifacts: tuple[Artifact, Artifact]) -> None:
    a, _ = artifacts

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "dev") as (agent, controller):
            await activate(agent, controller, a)
            assert agent.predict(a.manifest.smoke_tests[0].inputs[0])
            await controller.publish_desired(None, deployment_id="ro-3-revert")
            await wait_for_async(lambda: agent.active is None and agent.state == "idle", 10,
                             "the model to be unloaded")
            with pytest.raises(NoActiveModel):
                agent.predict(a.manifest.smoke_tests[0].inputs[0])
            await wait_for_async(lambda: controller.last_reported is not None
                             and controller.last_reported.active is None
                             and controller.last_reported.state == "idle", 10,
                             "the idle state reported")
            assert controller.last_reported.deployment_id == "ro-3-revert"
            # the pointer names no active model; the unloaded one stays as the previous slot
            pointer = json.loads((agent.config.data_dir / "active.json").read_text())
            assert pointer["manifest"] is None
            assert pointer["previous"]["manifest"]["artifact"]["sha256"] == \
                a.manifest.artifact.sha256
            count = len(controller.reported)
            await controller.publish_desired(None, deployment_id="ro-3-revert")  # again
            await asyncio.sleep(0.3)
            assert len(controller.reported) == count  # nothing to do, nothing reported
        # a restart does not bring the unloaded model back
        again = EdgeAgent(agent_config(broker, tmp_path / "dev", agent.device_id))
        await again.start()
        try:
            assert again.active is None and again.state == "idle"
        finally:
            await again.stop()

    asyncio.run(scenario())


def test_desiring_the_active_model_cancels_the_update_in_flight(
        broker: BrokerProcess, tmp_path: Path, artifacts: tuple[Artifact, Artifact]) -> None:
    a, b = artifacts

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "dev") as (agent, controller):
            await activate(agent, controller, a)
            # the new version arrives slowly: only the first chunk is served for now
            controller.serve(b.manifest.artifact, b.data)
            held: list[int] = []

            def first_chunk_only(index: int, good: bytes, served: int) -> bytes | None:
                if index == 0:
                    return good
                held.append(index)
                return None

            controller.tamper = first_chunk_only
            await controller.publish_desired(b.manifest, deployment_id="ro-4")
            await wait_for_async(lambda: agent.state == "downloading" and agent.download is not None
                             and agent.download.received >= 1, 10, "the download to start")
            await controller.publish_desired(a.manifest, deployment_id="ro-4-revert")
            await wait_for_async(lambda: agent.state == "active" and agent.download is None, 10,
                             "the update to be dropped")
            # the rest of v2 still arrives (a late repair answer): it must not be installed
            controller.tamper = None
            for i in sorted(set(held)):
                controller.link.publish(f"ew/v1/art/{b.manifest.artifact.sha256}/{i}",
                                        b.data[i * 1024:(i + 1) * 1024])
            await asyncio.sleep(1.0)
            assert agent.active is not None and agent.active.version == 1
            assert agent.state == "active" and agent.target is None

    asyncio.run(scenario())


def test_a_model_larger_than_max_model_bytes_fails_before_any_download(
        broker: BrokerProcess, tmp_path: Path, artifacts: tuple[Artifact, Artifact]) -> None:
    a, b = artifacts

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "dev",
                                        max_model_bytes=b.manifest.artifact.size - 1) as (
                agent, controller):
            await activate(agent, controller, a)  # the small model fits
            controller.serve(b.manifest.artifact, b.data)
            await controller.publish_desired(b.manifest, deployment_id="ro-5")
            await wait_for_async(lambda: agent.state == "failed", 10, "the refusal")
            assert agent.last_error is not None and "max_model_bytes" in agent.last_error
            assert agent.active is not None and agent.active.version == 1  # still serving v1
            await asyncio.sleep(0.3)
            assert not [r for r in controller.requests if r.sha256 == b.manifest.artifact.sha256]
            reported = controller.last_reported
            assert reported is not None and reported.state == "failed"
            assert reported.target is not None and reported.target.version == 2

    asyncio.run(scenario())
