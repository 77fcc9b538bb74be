"""Garbage on an agent's desired, ack and chunk topics: dropped, counted and logged; the agent
stays connected, activates nothing, and a valid flow afterwards still works.

Each test runs one real EdgeAgent on the session's Mosquitto; the test itself plays the
controller (``FakeController``) with a plain MqttLink.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import EdgeAgent
from edgewise_wire import Desired, encode
from edgewise_wire.manifest import MAX_ARTIFACT_SIZE
from edgewise_wire.message_base import MAX_CONTROL_BYTES
from edgewise_wire.topics import DeviceChannel, chunk_topic
from simulator.broker import BrokerProcess
from tests.harness.fake_controller import (
    FakeController,
    activate,
    agent_and_controller,
    assert_agent_healthy,
    model_files,
    partial_files,
)
from tests.harness.iris_models import IrisModels
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker]

DESIRED = DeviceChannel.DESIRED
ACK = DeviceChannel.ACK


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _desired(manifest: Any, **changes: Any) -> dict[str, Any]:
    body = {"schema": 1, "type": "desired", "deployment_id": "dep-garbage", "manifest": manifest,
            "ts": 1.0}
    body.update(changes)
    return body


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


def _manifest(m: dict[str, Any], **changes: Any) -> dict[str, Any]:
    m = copy.deepcopy(m)
    m.update(changes)
    return m


def _artifact(m: dict[str, Any], **changes: Any) -> dict[str, Any]:
    m = copy.deepcopy(m)
    m["artifact"].update(changes)
    return m


Builder = Callable[[dict[str, Any]], bytes]  # model a's manifest as a dict -> payload

DESIRED_GARBAGE: dict[str, Builder] = {
    "not-json": lambda m: b"this is {not json",
    "binary": lambda m: bytes(range(256)),
    "empty": lambda m: b"",
    "json-array": lambda m: _json([_desired(m)]),
    "json-number": lambda m: b"42",
    "json-null": lambda m: b"null",
    "no-schema": lambda m: _json(_without(_desired(m), "schema")),
    "schema-version-2": lambda m: _json(_desired(m, schema=2)),
    "schema-as-string": lambda m: _json(_desired(m, schema="1")),
    "schema-as-bool": lambda m: _json(_desired(m, schema=True)),
    "wrong-type-ack": lambda m: _json({"schema": 1, "type": "ack", "first_seq": 1, "last_seq": 2}),
    "unknown-type": lambda m: _json(_desired(m, type="reboot")),
    "missing-deployment-id": lambda m: _json(_without(_desired(m), "deployment_id")),
    "deployment-id-not-string": lambda m: _json(_desired(m, deployment_id=7)),
    "deployment-id-too-long": lambda m: _json(_desired(m, deployment_id="d" * 200)),
    "missing-ts": lambda m: _json(_without(_desired(m), "ts")),
    "ts-nan": lambda m: _json(_desired(m, ts=float("nan"))),
    "ts-string": lambda m: _json(_desired(m, ts="now")),
    "manifest-array": lambda m: _json(_desired([m])),
    "manifest-missing-fields": lambda m: _json(_desired({"schema": 1, "model": "iris"})),
    "manifest-schema-2": lambda m: _json(_desired(_manifest(m, schema=2))),
    "manifest-unknown-format": lambda m: _json(_desired(_manifest(m, format="pickle"))),
    "manifest-unknown-task": lambda m: _json(_desired(_manifest(m, task="clustering"))),
    "manifest-unknown-label-output": lambda m: _json(_desired(_manifest(m, label_output="nope"))),
    "manifest-no-inputs": lambda m: _json(_desired(_manifest(m, inputs=[]))),
    "manifest-negative-shape": lambda m: _json(_desired(_manifest(
        m, inputs=[{"name": "input", "dtype": "float32", "shape": [None, -4]}]))),
    "manifest-smoke-length-mismatch": lambda m: _json(_desired(_manifest(m, smoke_tests=[
        {"inputs": [[1.0, 2.0, 3.0, 4.0]], "expected_labels": [0, 1]}]))),
    "artifact-missing": lambda m: _json(_desired(_without(m, "artifact"))),
    "artifact-chunk-count-mismatch": lambda m: _json(_desired(_artifact(
        m, chunk_sha256=m["artifact"]["chunk_sha256"] * 2))),
    "artifact-no-chunks": lambda m: _json(_desired(_artifact(m, chunk_sha256=[]))),
    "artifact-chunk-hash-not-digest": lambda m: _json(_desired(_artifact(m, chunk_sha256=["abc"]))),
    "artifact-size-zero": lambda m: _json(_desired(_artifact(m, size=0))),
    "artifact-size-over-limit": lambda m: _json(_desired(_artifact(m, size=MAX_ARTIFACT_SIZE + 1))),
    "artifact-chunk-size-tiny": lambda m: _json(_desired(_artifact(m, chunk_size=1))),
    "oversized": lambda m: _json(_desired(m, padding="x" * MAX_CONTROL_BYTES)),
    # the decoder's own edge cases: JSON that Python's parser refuses with other exceptions
    "deeply-nested-json": lambda m: b"[" * 100_000 + b"]" * 100_000,  # RecursionError
    "integer-with-5000-digits": lambda m: (  # ValueError: int max str digits
        b'{"schema":1,"type":"desired","deployment_id":"d","manifest":null,"ts":'
        + b"9" * 5000 + b"}"),
    "integer-too-large-for-float": lambda m: _json(_desired(None, ts=10**400)),  # OverflowError
}

ACK_GARBAGE: dict[str, Callable[[], bytes]] = {
    "not-json": lambda: b"\x00\x01ack?",
    "empty": lambda: b"",
    "json-array": lambda: _json([1, 2]),
    "schema-version-0": lambda: _json({"schema": 0, "type": "ack", "first_seq": 1, "last_seq": 1}),
    "wrong-type-desired": lambda: encode(Desired("dep", None)),
    "missing-last-seq": lambda: _json({"schema": 1, "type": "ack", "first_seq": 1}),
    # an ack must name its outbox epoch: without one it could delete any outbox's records
    "missing-epoch": lambda: _json({"schema": 1, "type": "ack", "first_seq": 1, "last_seq": 1}),
    "null-epoch": lambda: _json({"schema": 1, "type": "ack", "first_seq": 1, "last_seq": 1,
                                 "epoch": None}),
    "first-seq-zero": lambda: _json({"schema": 1, "type": "ack", "first_seq": 0, "last_seq": 1}),
    "inverted-range": lambda: _json({"schema": 1, "type": "ack", "first_seq": 5, "last_seq": 2}),
    "seq-float": lambda: _json({"schema": 1, "type": "ack", "first_seq": 1.5, "last_seq": 2}),
    "seq-string": lambda: _json({"schema": 1, "type": "ack", "first_seq": "1", "last_seq": 2}),
    "seq-bool": lambda: _json({"schema": 1, "type": "ack", "first_seq": True, "last_seq": 2}),
    "oversized": lambda: _json({"schema": 1, "type": "ack", "first_seq": 1, "last_seq": 1,
                                "padding": "x" * MAX_CONTROL_BYTES}),
    "deeply-nested-json": lambda: b"{\"a\":" * 100_000 + b"1" + b"}" * 100_000,
    # parses and validates, but does not fit the outbox's SQLite INTEGER
    "seq-beyond-64-bits": lambda: _json({"schema": 1, "type": "ack", "first_seq": 2**64,
                                         "last_seq": 2**64 + 1}),
}


async def _deliver(agent: EdgeAgent, controller: FakeController, topic: str,
                   payload: bytes, retain: bool = False) -> None:
    """Publish and wait until the agent's handler has run on the message."""
    before = agent.link.messages_in
    await controller.publish(topic, payload, retain=retain)
    await wait_for_async(lambda: agent.link.messages_in > before, 5,
                     f"the agent to receive the message on {topic}")


async def _still_updates_and_serves(agent: EdgeAgent, controller: FakeController,
                                    models: IrisModels) -> None:
    """The valid flow after the garbage: roll out model a, predict, see it reported."""
    await activate(agent, controller, models.a)
    predictions = agent.predict(models.rows[:5])
    assert [p.label for p in predictions] == models.labels_a[:5]
    await wait_for_async(lambda: controller.last_reported is not None
                     and controller.last_reported.state == "active", 5, "reported state 'active'")
    reported = controller.last_reported
    assert reported is not None and reported.active is not None
    assert reported.active.sha256 == models.a.manifest.artifact.sha256


@pytest.mark.parametrize("case", list(DESIRED_GARBAGE))
def test_garbage_desired_is_dropped_and_counted_then_a_valid_update_works(
        case: str, broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels,
        caplog: pytest.LogCaptureFixture) -> None:
    payload = DESIRED_GARBAGE[case](iris_models.a.manifest.to_dict())

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "agent") as (agent, ctl):
            await _deliver(agent, ctl, ctl.topic(DESIRED), payload)
            assert_agent_healthy(agent)
            assert agent.dropped_messages == Counter(malformed=1)
            assert (agent.state, agent.active, agent.target) == ("idle", None, None)
            assert model_files(agent) == set() and partial_files(agent) == set()
            await _still_updates_and_serves(agent, ctl, iris_models)
            assert_agent_healthy(agent)

    asyncio.run(scenario())
    assert "dropped message (malformed)" in caplog.text


@pytest.mark.parametrize("case", list(ACK_GARBAGE))
def test_garbage_ack_is_dropped_and_counted_then_telemetry_is_still_acknowledged(
        case: str, broker: BrokerProcess, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "agent") as (agent, ctl):
            await _deliver(agent, ctl, ctl.topic(ACK), ACK_GARBAGE[case]())
            assert_agent_healthy(agent)
            assert agent.dropped_messages == Counter(malformed=1)
            # telemetry still flows and real acks still delete it from the outbox
            for i in range(3):
                agent.feedback(f"unknown-{i}", i)
            assert agent.outbox is not None
            outbox = agent.outbox
            await wait_for_async(lambda: outbox.stats().acked_total == 3, 10,
                             "the 3 feedback records to be acknowledged")
            assert outbox.stats().pending == 0
            assert_agent_healthy(agent)

    asyncio.run(scenario())
    assert "dropped message (malformed)" in caplog.text


def test_ack_for_records_never_sent_is_harmless(broker: BrokerProcess, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "agent") as (agent, ctl):
            assert agent.outbox is not None
            ack = _json({"schema": 1, "type": "ack", "first_seq": 1000, "last_seq": 2000,
                         "epoch": agent.outbox.epoch})
            await _deliver(agent, ctl, ctl.topic(ACK), ack)
            assert_agent_healthy(agent)
            assert agent.dropped_messages == Counter()
            assert agent.outbox is not None and agent.outbox.stats().acked_total == 0

    asyncio.run(scenario())


def test_retained_garbage_desired_at_start_is_dropped_and_the_agent_comes_up(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    async def plant(ctl: FakeController) -> None:
        await ctl.publish(ctl.topic(DESIRED), b"\xde\xad\xbe\xef", retain=True)

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "agent", before_start=plant) as (
                agent, ctl):
            await wait_for_async(lambda: agent.link.messages_in >= 1, 5, "the retained desired")
            assert_agent_healthy(agent)
            assert agent.dropped_messages == Counter(malformed=1)
            assert agent.state == "idle"
            await _still_updates_and_serves(agent, ctl, iris_models)

    asyncio.run(scenario())


def test_a_model_its_runtime_cannot_load_fails_clearly_and_the_previous_model_keeps_serving(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    import dataclasses

    # ONNX bytes announced as TFLite: verified, then refused by the TFLite interpreter
    tflite = dataclasses.replace(iris_models.c.manifest, format="tflite")

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "agent") as (agent, ctl):
            await activate(agent, ctl, iris_models.a)
            ctl.serve(tflite.artifact, iris_models.c.data)
            await ctl.publish_desired(tflite)
            # a failed activation rolls back to the previous slot, and says why
            await wait_for_async(lambda: agent.state == "rolled_back", 10, "state 'rolled_back'")
            assert agent.last_error is not None and "TFLite interpreter cannot load" in agent.last_error
            await wait_for_async(lambda: ctl.last_reported is not None
                             and ctl.last_reported.state == "rolled_back", 5,
                             "reported 'rolled_back'")
            assert ctl.last_reported is not None
            assert ctl.last_reported.last_error == agent.last_error
            assert agent.active is not None
            assert agent.active.sha256 == iris_models.a.manifest.artifact.sha256
            assert [p.label for p in agent.predict(iris_models.rows[:3])] == \
                iris_models.labels_a[:3]
            assert model_files(agent) == {f"{iris_models.a.manifest.artifact.sha256}.onnx"}
            assert_agent_healthy(agent)

    asyncio.run(scenario())


def test_garbage_on_chunk_topics_is_rejected_or_ignored_and_the_download_completes(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels,
        caplog: pytest.LogCaptureFixture) -> None:
    b = iris_models.b
    ref = b.manifest.artifact
    sha, count, size = ref.sha256, ref.chunk_count, ref.chunk_size
    good0, good1 = b.data[:size], b.data[size:2 * size]
    unknown_sha = hashlib.sha256(b"an artifact nobody asked for").hexdigest()

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "agent") as (agent, ctl):
            # garbage on chunk topics of an unknown artifact while the agent is idle
            await ctl.publish(chunk_topic(unknown_sha, 0), b"garbage")
            await ctl.publish(f"ew/v1/art/{unknown_sha}/abc", b"garbage")

            ctl.serve(ref, b.data)
            ctl.tamper = lambda index, good, served: None  # withhold: the test sends the chunks
            await ctl.publish_desired(b.manifest)
            await wait_for_async(lambda: ctl.requests, 5, "the agent's chunk request")
            download = agent.download
            assert download is not None and download.ref.sha256 == sha
            before = agent.link.messages_in

            await ctl.publish(chunk_topic(unknown_sha, 0), good0)  # not subscribed: never arrives
            rejected = [
                (chunk_topic(sha, 0), b""),  # empty
                (chunk_topic(sha, 0), good0[:-1]),  # truncated
                (chunk_topic(sha, 0), good0 + b"\0"),  # one byte too many
                (chunk_topic(sha, 0), bytes([good0[0] ^ 0x01]) + good0[1:]),  # one bit flipped
                (chunk_topic(sha, 0), good1),  # the right length, another chunk's bytes
                (chunk_topic(sha, count), good0),  # one past the last chunk
            ]
            malformed = [f"ew/v1/art/{sha}/abc", f"ew/v1/art/{sha}/-1", f"ew/v1/art/{sha}/1e3"]
            for topic, payload in rejected:
                await ctl.publish(topic, payload)
            for topic in malformed:
                await ctl.publish(topic, good0)
            # an absurd index: refused by the topic parser or by the download, either is fine
            await ctl.publish(f"ew/v1/art/{sha}/{10**20}", good0)
            sent = len(rejected) + len(malformed) + 1
            await wait_for_async(lambda: agent.link.messages_in >= before + sent, 5,
                             "the garbage chunks to arrive")

            assert download.rejected_chunks in (len(rejected), len(rejected) + 1)
            assert download.received == 0
            assert set(agent.dropped_messages) == {"malformed"}
            assert download.rejected_chunks + agent.dropped_messages["malformed"] == sent
            assert agent.state == "downloading" and agent.active is None
            assert model_files(agent) == set()
            assert_agent_healthy(agent)

            # now the real chunks: the agent's next repair request is answered properly
            ctl.tamper = None
            await wait_for_async(lambda: agent.state == "active", 10,
                             f"activation after the garbage (state {agent.state})")
            assert agent.active is not None and agent.active.sha256 == sha
            assert model_files(agent) == {f"{sha}.onnx"}
            assert_agent_healthy(agent)

    asyncio.run(scenario())
    assert "failed verification" in caplog.text
    assert "out of range" in caplog.text


def test_chunk_index_of_non_ascii_digits_is_a_counted_drop(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    """'²' passes str.isdigit() but int('²') raises ValueError, which is not a ProtocolError."""
    b = iris_models.b
    sha = b.manifest.artifact.sha256

    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "agent") as (agent, ctl):
            ctl.serve(b.manifest.artifact, b.data)
            ctl.tamper = lambda index, good, served: None
            await ctl.publish_desired(b.manifest)
            await wait_for_async(lambda: ctl.requests, 5, "the agent's chunk request")
            await _deliver(agent, ctl, f"ew/v1/art/{sha}/\u00b2", b"garbage")
            assert_agent_healthy(agent)
            assert agent.dropped_messages == Counter(malformed=1)

    asyncio.run(scenario())


@pytest.mark.parametrize("bad_sha", ["upper-case-hex", "path-traversal"])
def test_manifest_sha256_that_is_not_a_hex_digest_is_refused(
        bad_sha: str, broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    """The artifact sha256 is used in file names and chunk topics: anything but 64 lower-case
    hex digits must be refused (dropped as malformed, or failed with a clear error), never
    written outside the data directory nor left 'downloading' forever."""
    m = iris_models.a.manifest.to_dict()
    real = m["artifact"]["sha256"]
    m["artifact"]["sha256"] = real.upper() if bad_sha == "upper-case-hex" else "../../escaped"
    data_dir = tmp_path / "agent"

    async def scenario() -> None:
        async with agent_and_controller(broker, data_dir) as (agent, ctl):
            await _deliver(agent, ctl, ctl.topic(DESIRED), _json(_desired(m)))
            outside = [p for p in tmp_path.rglob("*")
                       if p.is_file() and data_dir not in p.parents]
            assert outside == [], f"the agent wrote outside its data directory: {outside}"
            await wait_for_async(
                lambda: agent.dropped_messages["malformed"] == 1 or agent.state == "failed", 3,
                f"the bad manifest to be refused (state {agent.state!r})")
            assert agent.active is None
            assert_agent_healthy(agent)

    asyncio.run(scenario())
