"""Agent self-update on the device: the decisions, and a signed bundle downloaded chunk by chunk
(through a fake broker that answers chunk requests as the controller's chunk server does) and
staged with the launcher; a tampered envelope or tampered bytes are refused, nothing staged."""

from __future__ import annotations

import asyncio
import copy
import gzip
import io
import json
import random
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.security.signing import generate_keypair, sign_agent_manifest, sign_manifest
from edge_agent.launcher.plan import Journal, Phase
from edge_agent.launcher.slots import VERSION_FILE, SlotRoot
from edge_agent.self_update import Action, AgentSelfUpdate, Memory, decide, learn_outcome
from edgewise_wire import decode
from edgewise_wire.manifest import AgentManifest, ArtifactRef
from edgewise_wire.order_messages import DesiredAgent
from edgewise_wire.request_messages import ArtifactRequest
from edgewise_wire.topics import ChunkTopic
from tests.unit.edgewise_wire.test_envelope import _manifest as model_manifest

NOW = 1_750_000_000.0
COMMITTED = Journal(Phase.COMMITTED, "a")


def test_decisions() -> None:
    assert decide("1.0", "1.0", COMMITTED, {}) is Action.CURRENT
    assert decide("2.0", "1.0", COMMITTED, {}) is Action.STAGE
    assert decide("2.0", "1.0", COMMITTED, {"2.0": "probation"}) is Action.FAILED_BEFORE
    staged = Journal(Phase.STAGED, "a", trial="b", trial_version="2.0")
    assert decide("2.0", "1.0", staged, {}) is Action.IN_FLIGHT
    assert decide("3.0", "1.0", staged, {}) is Action.STAGE  # a newer order replaces it
    probation = Journal(Phase.PROBATION, "a", trial="b", trial_version="2.0")
    assert decide("3.0", "1.0", probation, {}) is Action.BUSY
    # the new agent itself, before its launcher committed it: not "current" yet
    assert decide("2.0", "2.0", probation, {}) is Action.ON_PROBATION


def test_a_staged_version_that_does_not_run_at_rest_failed_its_probation() -> None:
    rolled_back = Journal(Phase.COMMITTED, "a", last_error="probation: not connected")
    learned = learn_outcome(Memory("2.0"), "1.0", rolled_back)
    assert learned == Memory(None, {"2.0": "probation: not connected"})
    assert learn_outcome(Memory("2.0"), "2.0", COMMITTED) == Memory(None, {})
    on_probation = Journal(Phase.PROBATION, "a", trial="b", trial_version="2.0")
    assert learn_outcome(Memory("2.0"), "1.0", on_probation) == Memory("2.0")


def bundle(text: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in (("bin/edgewise-agent", f"#!/bin/sh\necho {text}\n".encode()),
                           ("venv/padding", random.Random(text).randbytes(5000))):  # chunks
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


class FakeBroker:
    """Answers an artifact request with the chunks of ``data`` (or of ``served`` instead)."""

    def __init__(self, data: bytes, ref: ArtifactRef) -> None:
        self.data = data
        self.ref = ref
        self.connected = True
        self.deliver: Callable[[ChunkTopic, bytes], None] | None = None
        self.requests = 0

    async def subscribe_and_wait(self, topic: str, qos: int = 1, timeout: float = 10.0) -> None:
        return None

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        request = decode(payload, ArtifactRequest)
        self.requests += 1
        assert self.deliver is not None
        for start, end in request.ranges:
            for i in range(start, end):
                chunk = self.data[i * self.ref.chunk_size:(i + 1) * self.ref.chunk_size]
                asyncio.get_running_loop().call_soon(self.deliver, ChunkTopic(request.sha256, i),
                                                     chunk)
        return 1

    def unsubscribe(self, topic: str) -> None:
        return None


@pytest.fixture(scope="module")
def key() -> tuple[bytes, bytes, str]:
    return generate_keypair()


def run(tmp_path: Path, key: tuple[bytes, bytes, str], signed: dict[str, Any] | None,
        served: bytes, ref: ArtifactRef, *, running: str = "1.0",
        trusted: bool = True, wait_s: float = 5.0) -> tuple[AgentSelfUpdate, SlotRoot]:
    root = SlotRoot(tmp_path / "agent-slots")
    broker = FakeBroker(served, ref)
    update = AgentSelfUpdate(
        broker, device_id="dev-1", data_dir=tmp_path / "data", launcher_root=root.root,
        running_version=running, trusted_keys={key[2]: key[1]} if trusted else {},
        device_class="pi4", clock=lambda: NOW, report=lambda: None, repair_interval_s=0.2,
        use_url=False)
    broker.deliver = update.on_chunk

    async def scenario() -> None:
        tasks = update.tasks()
        update.on_desired(DesiredAgent(signed, "ro-1", NOW))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while update.state in ("idle", "downloading") and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        update.close()

    asyncio.run(scenario())
    return update, root


def signed_bundle(key: tuple[bytes, bytes, str], data: bytes,
                  version: str = "2.0") -> tuple[dict[str, Any], ArtifactRef]:
    ref = ArtifactRef.describe(data, 1024)
    manifest = AgentManifest(version, ref)
    return sign_agent_manifest(manifest.to_dict(), key[0], expires_at=NOW + 3600), ref


def test_a_signed_bundle_is_downloaded_verified_and_staged(
        tmp_path: Path, key: tuple[bytes, bytes, str]) -> None:
    data = bundle("v2")
    signed, ref = signed_bundle(key, data)
    assert ref.chunk_count > 3
    update, root = run(tmp_path, key, signed, data, ref)
    assert (update.state, update.last_error) == ("staged", None), update.last_error
    journal = root.load()
    assert (journal.phase, journal.trial, journal.trial_version, journal.trial_sha256) == \
        (Phase.STAGED, "b", "2.0", ref.sha256)
    assert (root.slot_dir("b") / VERSION_FILE).read_text().strip() == "2.0"
    assert root.slot_version("b") == "2.0"
    memory = json.loads((tmp_path / "data" / "agent-update.json").read_text())
    assert memory == {"staged": "2.0", "failed": {}}


def test_what_it_staged_is_remembered_before_the_launcher_can_switch(
        tmp_path: Path, key: tuple[bytes, bytes, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The launcher stops this agent within a second of ``staged``: if the agent had not yet
    written down what it staged, the restored old agent would not know the version failed
    and would stage it again and again."""
    data = bundle("v2")
    signed, ref = signed_bundle(key, data)
    memory_file = tmp_path / "data" / "agent-update.json"
    seen: list[Any] = []
    real_stage = SlotRoot.stage

    def stage(self: SlotRoot, *args: Any) -> Any:
        seen.append(json.loads(memory_file.read_text()) if memory_file.exists() else None)
        return real_stage(self, *args)

    monkeypatch.setattr(SlotRoot, "stage", stage)
    update, _ = run(tmp_path, key, signed, data, ref)
    assert update.state == "staged", update.last_error
    assert seen == [{"staged": "2.0", "failed": {}}]


def test_the_running_version_is_not_staged_again(tmp_path: Path,
                                                 key: tuple[bytes, bytes, str]) -> None:
    data = bundle("v2")
    signed, ref = signed_bundle(key, data)
    update, root = run(tmp_path, key, signed, data, ref, running="2.0")
    assert update.state == "current" and root.load().phase is Phase.COMMITTED


def tampered_envelope(signed: dict[str, Any]) -> dict[str, Any]:
    bad = copy.deepcopy(signed)
    bad["manifest"]["version"] = "6.6.6"
    return bad


@pytest.mark.parametrize("case", ["tampered-envelope", "model-envelope", "unsigned-device",
                                  "tampered-bytes"])
def test_refused_bundles_are_reported_and_never_staged(
        tmp_path: Path, key: tuple[bytes, bytes, str], case: str) -> None:
    data = bundle("v2")
    signed, ref = signed_bundle(key, data)
    served, trusted, wait_s = data, True, 5.0
    if case == "tampered-envelope":
        signed = tampered_envelope(signed)
    elif case == "model-envelope":
        signed = sign_manifest(model_manifest(), key[0], expires_at=NOW + 3600)
    elif case == "unsigned-device":
        trusted = False
    else:  # the store serves other bytes: every chunk fails its signed hash
        served, wait_s = bundle("evil") + b"\0" * 4096, 1.5
    update, root = run(tmp_path, key, signed, served, ref, trusted=trusted, wait_s=wait_s)
    assert root.load().phase is Phase.COMMITTED and not root.slot_dir("b").exists()
    if case == "tampered-bytes":
        download = update.fetch.download
        assert update.state == "downloading" and download is not None
        assert download.received < ref.chunk_count and download.rejected_chunks > 0
    else:
        assert update.state == "refused" and update.refused == 1
        assert update.last_error and ("refused" in update.last_error
                                      or "trusted_keys" in update.last_error)
