"""Tampered artifacts never become the active model.

The test plays the controller: it answers the agent's ``art/req`` with chunks of a real model
converted by ``convert_sklearn``, corrupting them, or serves a manifest that lies about the whole
file or about the model's behaviour. Corrupt chunks are rejected and asked for again; a wrong
whole-file hash or a failed smoke test ends in state 'failed' with the previous model serving.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.runtime import file_sha256
from edgewise_wire import ArtifactRef, SmokeTest
from simulator.broker import BrokerProcess
from tests.harness.fake_controller import (
    Artifact,
    ChunkTamper,
    FakeController,
    activate,
    agent_and_controller,
    agent_config,
    assert_agent_healthy,
    model_files,
    partial_files,
)
from tests.harness.iris_models import IrisModels
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker]


def _flip_bit(good: bytes) -> bytes:
    return bytes([good[0] ^ 0x01]) + good[1:]


CORRUPTIONS: dict[str, ChunkTamper] = {
    "bit-flip": lambda index, good, served: _flip_bit(good),
    "truncated": lambda index, good, served: good[:-7],
    "extended": lambda index, good, served: good + b"\0" * 7,
    "empty": lambda index, good, served: b"",
    "zeros": lambda index, good, served: bytes(len(good)),
}


def _assert_serves(agent: EdgeAgent, artifact: Artifact, models: IrisModels) -> None:
    """``artifact`` is the active model, on disk and in memory, and answers predictions."""
    sha = artifact.manifest.artifact.sha256
    assert agent.active is not None and agent.active.sha256 == sha
    assert agent.runtime is not None and agent.runtime.manifest.artifact.sha256 == sha
    predictions = agent.predict(models.rows[:4])
    assert all(p.version == artifact.manifest.version for p in predictions)
    if artifact is models.a:
        assert [p.label for p in predictions] == models.labels_a[:4]
    active = json.loads((agent.config.data_dir / "active.json").read_text())
    assert active["file"] == f"{sha}.onnx"
    assert file_sha256(agent.config.data_dir / "models" / active["file"]) == sha


async def _wait_failed(agent: EdgeAgent, ctl: FakeController, state: str = "failed") -> str:
    """Wait for the refusal: ``failed`` before activation, ``rolled_back`` when the activation
    itself failed (the previous slot is switched back in)."""
    await wait_for_async(lambda: agent.state == state, 10,
                     f"state {state!r} (state {agent.state}, last_error {agent.last_error})")
    await wait_for_async(lambda: ctl.last_reported is not None
                     and ctl.last_reported.state == state, 5, f"reported state {state!r}")
    reported = ctl.last_reported
    assert reported is not None and reported.last_error == agent.last_error
    assert agent.last_error is not None
    return agent.last_error


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupted_chunks_are_rejected_never_activated_and_good_ones_then_activate(
        corruption: str, broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    b = iris_models.b
    count = b.manifest.artifact.chunk_count
    corrupt = CORRUPTIONS[corruption]

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "agent") as (agent, ctl):
            ctl.serve(b.manifest.artifact, b.data)
            ctl.tamper = corrupt
            await ctl.publish_desired(b.manifest)
            await wait_for_async(lambda: agent.download is not None, 5, "the download to start")
            download = agent.download
            assert download is not None
            # every chunk comes corrupted, then comes corrupted again on the repair request
            await wait_for_async(lambda: download.rejected_chunks >= 2 * count, 10,
                             "two rounds of corrupted chunks to be rejected")
            assert len(ctl.requests) >= 2
            assert download.received == 0
            assert agent.state == "downloading" and agent.active is None
            assert agent.runtime is None and model_files(agent) == set()
            assert not (agent.config.data_dir / "active.json").exists()
            assert ctl.errors == []

            ctl.tamper = None  # the genuine chunks now
            await wait_for_async(lambda: agent.state == "active", 10,
                             f"activation once good chunks come (state {agent.state}, "
                             f"last_error {agent.last_error})")
            _assert_serves(agent, b, iris_models)
            assert model_files(agent) == {f"{b.manifest.artifact.sha256}.onnx"}
            assert partial_files(agent) == set()
            assert_agent_healthy(agent)

    asyncio.run(scenario())


def test_chunks_swapped_between_indices_are_rejected(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    b = iris_models.b
    ref = b.manifest.artifact
    size = ref.chunk_size

    def swap(index: int, good: bytes, served: int) -> bytes:
        if served > 0:
            return good
        # the first time, each full-size chunk is answered with its neighbour's bytes
        other = index + 1 if index + 1 < ref.chunk_count - 1 else index - 1
        return b.data[other * size:(other + 1) * size] if len(good) == size else good

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "agent") as (agent, ctl):
            ctl.serve(ref, b.data)
            ctl.tamper = swap
            await ctl.publish_desired(b.manifest)
            await wait_for_async(lambda: agent.download is not None, 5, "the download to start")
            download = agent.download
            assert download is not None
            await activate(agent, ctl, b)
            assert download.rejected_chunks == ref.chunk_count - 1  # all but the short last one
            _assert_serves(agent, b, iris_models)

    asyncio.run(scenario())


def test_only_the_rejected_chunk_is_asked_for_again(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    b = iris_models.b
    ref = b.manifest.artifact
    bad = 1

    def corrupt_once(index: int, good: bytes, served: int) -> bytes:
        return _flip_bit(good) if index == bad and served == 0 else good

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "agent") as (agent, ctl):
            ctl.serve(ref, b.data)
            ctl.tamper = corrupt_once
            await ctl.publish_desired(b.manifest)
            await wait_for_async(lambda: agent.download is not None, 5, "the download to start")
            download = agent.download
            assert download is not None
            await wait_for_async(lambda: agent.state == "active", 10, "activation")
            assert download.rejected_chunks == 1
            assert ctl.requests[0].ranges == ((0, ref.chunk_count),)
            assert ctl.requests[1:], "the rejected chunk was never asked for again"
            assert {r.ranges for r in ctl.requests[1:]} == {((bad, bad + 1),)}
            _assert_serves(agent, b, iris_models)

    asyncio.run(scenario())


def test_whole_file_hash_mismatch_fails_and_the_previous_model_keeps_serving(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    """Every chunk verifies against the manifest's chunk hashes, but the manifest's sha256 of
    the whole file is another one: the assembled file must be refused and removed."""
    a, b = iris_models.a, iris_models.b
    good_ref = b.manifest.artifact
    lying_sha = hashlib.sha256(b"not the bytes that will arrive").hexdigest()
    lying_ref = ArtifactRef(lying_sha, good_ref.size, good_ref.chunk_size, good_ref.chunk_sha256)
    lying = dataclasses.replace(b.manifest, artifact=lying_ref)
    data_dir = tmp_path / "agent"

    async def scenario() -> str:
        async with agent_and_controller(broker, data_dir) as (agent, ctl):
            await activate(agent, ctl, a)
            ctl.serve(lying_ref, b.data)
            await ctl.publish_desired(lying, deployment_id="dep-lying")
            # (the download may finish before a poll could see it: judged by what was served)
            error = await _wait_failed(agent, ctl)
            served = {index: n for (sha, index), n in ctl._served.items() if sha == lying_sha}
            # each chunk was fine (served once, never asked again); the whole was not
            assert served == {i: 1 for i in range(good_ref.chunk_count)}
            assert "hash or size mismatch" in error and lying_sha[:12] in error
            reported = ctl.last_reported
            assert reported is not None and reported.active is not None
            assert reported.active.sha256 == a.manifest.artifact.sha256
            assert reported.target is not None and reported.target.sha256 == lying_sha
            _assert_serves(agent, a, iris_models)
            assert model_files(agent) == {f"{a.manifest.artifact.sha256}.onnx"}
            assert not any(lying_sha in name or good_ref.sha256 in name
                           for name in model_files(agent) | partial_files(agent))
            assert_agent_healthy(agent)
            return ctl.device_id

    device_id = asyncio.run(scenario())

    async def restart() -> None:
        # after a restart the device still runs the previous model, not the refused one, and
        # still says that the last update failed (the journal keeps the outcome)
        agent = EdgeAgent(agent_config(broker, data_dir, device_id))
        await asyncio.wait_for(agent.start(), 15)
        try:
            assert agent.state == "failed"
            assert agent.last_error is not None and "hash or size mismatch" in agent.last_error
            _assert_serves(agent, a, iris_models)
        finally:
            await agent.stop()

    asyncio.run(restart())


def _failing_smoke_test(artifact: Artifact) -> Artifact:
    """The same artifact with smoke-test labels the model does not produce."""
    manifest = artifact.manifest
    classes = len(manifest.class_labels or (0, 1, 2))
    altered = tuple(
        SmokeTest(case.inputs, [(int(x) + 1) % classes for x in case.expected_labels],
                  case.expected_scores)
        for case in manifest.smoke_tests)
    assert altered and altered != manifest.smoke_tests
    return Artifact(dataclasses.replace(manifest, smoke_tests=altered), artifact.data)


def test_failed_smoke_test_is_not_activated_and_the_previous_model_keeps_serving(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    a = iris_models.a
    bad = _failing_smoke_test(iris_models.b)

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "agent") as (agent, ctl):
            await activate(agent, ctl, a)
            ctl.serve(bad.manifest.artifact, bad.data)
            await ctl.publish_desired(bad.manifest, deployment_id="dep-bad-smoke")
            error = await _wait_failed(agent, ctl, "rolled_back")
            assert "smoke test" in error and "labels differ" in error
            _assert_serves(agent, a, iris_models)
            assert_agent_healthy(agent)

    asyncio.run(scenario())


def test_failed_smoke_test_leaves_no_artifact_in_models(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    """The refused artifact must not stay in models/: pruning keeps the two newest files there,
    so a leftover failed artifact would take the rollback model's place."""
    a, c = iris_models.a, iris_models.c
    bad = _failing_smoke_test(iris_models.b)
    bad_file = f"{bad.manifest.artifact.sha256}.onnx"

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "agent") as (agent, ctl):
            await activate(agent, ctl, a)
            ctl.serve(bad.manifest.artifact, bad.data)
            await ctl.publish_desired(bad.manifest, deployment_id="dep-bad-smoke")
            await _wait_failed(agent, ctl, "rolled_back")
            leftover = model_files(agent)
            # the next good update keeps the new model and the one before it (for a rollback)
            await activate(agent, ctl, c)
            _assert_serves(agent, c, iris_models)
            kept = model_files(agent)
            problems = []
            if bad_file in leftover:
                problems.append(f"the artifact that failed its smoke test stayed in models/ "
                                f"({sorted(leftover)})")
            if kept != {f"{c.manifest.artifact.sha256}.onnx", f"{a.manifest.artifact.sha256}.onnx"}:
                problems.append(f"after the next update the rollback model "
                                f"{a.manifest.artifact.sha256[:12]} was pruned ({sorted(kept)})")
            assert not problems, "; ".join(problems)

    asyncio.run(scenario())
