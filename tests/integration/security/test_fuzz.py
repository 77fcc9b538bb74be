"""Fuzzing with Hypothesis: random and malformed payloads on every topic the agent and the
controller listen to never crash either, and oversized payloads are refused before parsing.

Two levels for each side: the MQTT message handler called directly (hundreds of examples; a
crashing input is shrunk to a minimal one), and real MQTT through a real broker into a running
agent / a controller process, which must stay connected and keep serving valid traffic after.
tests/bad_input holds the fixed cases these generalise."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from controller.app.service import Controller
from controller.cli.client import ControllerClient
from controller.config import ControllerConfig
from edgewise_wire import Ack, Desired, Presence, Reported, TelemetryBatch, decode, encode
from edgewise_wire import codec as codec_module
from edgewise_wire.errors import PayloadTooLarge
from edgewise_wire.message_base import Message, ModelRef
from edgewise_wire.request_messages import ArtifactRequest
from edgewise_wire.topics import DeviceChannel, device_topic
from simulator.broker import BrokerProcess
from simulator.demo import start_controller, stop_process
from tests.harness.fake_controller import activate, agent_and_controller, assert_agent_healthy
from tests.harness.fuzz_strategies import agent_topics, controller_topics, payloads
from tests.harness.iris_models import IrisModels
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker]

FUZZ = settings(deadline=None, database=None, max_examples=300,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])
OVER_MQTT = settings(FUZZ, max_examples=120)


def _as_dict(message: Message) -> dict[str, Any]:
    return dict(json.loads(encode(message)))


def _agent_valid(models: IrisModels) -> list[dict[str, Any]]:
    return [_as_dict(Desired("dep-fuzz", models.b.manifest)), _as_dict(Desired("dep-none", None)),
            _as_dict(Ack(1, 5, 7))]


def _controller_valid(sha: str) -> list[dict[str, Any]]:
    now = time.time()
    return [
        _as_dict(Reported(state="active", active=ModelRef("iris", 2, sha))),
        _as_dict(Presence(online=True)),
        _as_dict(TelemetryBatch(1, 2, [{"seq": 1, "kind": "error", "ts": now, "reason": "x"},
                                       {"seq": 2, "kind": "error", "ts": now}])),
        _as_dict(ArtifactRequest(sha, ((0, 1),))),
    ]


# -- oversized: refused by size alone ---------------------------------------------------------

MESSAGE_TYPES = sorted(Message.__subclasses__(), key=lambda c: c.__name__)


@given(kind=st.sampled_from(MESSAGE_TYPES), extra=st.integers(1, 4096),
       head=st.binary(max_size=64))
@settings(FUZZ, max_examples=60)
def test_oversized_payloads_are_refused_before_parsing(kind: type[Message], extra: int,
                                                       head: bytes) -> None:
    payload = (head + b"x" * (kind.MAX_BYTES + extra))[: kind.MAX_BYTES + extra]
    original = codec_module.json.loads

    def must_not_parse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an oversized payload reached the JSON parser")

    codec_module.json.loads = must_not_parse  # type: ignore[assignment]
    try:
        with pytest.raises(PayloadTooLarge):
            decode(payload, kind)
    finally:
        codec_module.json.loads = original  # type: ignore[assignment]


# -- the agent ---------------------------------------------------------------------------------

def test_agent_survives_random_input_on_its_topics(broker: BrokerProcess, tmp_path: Path,
                                                   iris_models: IrisModels) -> None:
    failures: list[dict[str, Any]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: failures.append(ctx))
        async with agent_and_controller(broker, tmp_path / "agent") as (agent, controller):
            valid = _agent_valid(iris_models)

            @given(topic=agent_topics(agent.device_id), payload=payloads(valid))
            @FUZZ
            def direct(topic: str, payload: bytes) -> None:
                # what MqttLink does with every message, minus its safety net: an exception
                # here fails the test with the (shrunk) input
                agent.messages.on_message(topic, payload)

            direct()
            await asyncio.sleep(0.5)  # tasks the inputs started (downloads) run now

            sent: list[tuple[str, bytes]] = []

            @given(topic=agent_topics(agent.device_id, mqtt_safe=True), payload=payloads(valid))
            @OVER_MQTT
            def over_mqtt(topic: str, payload: bytes) -> None:
                sent.append((topic, payload))

            over_mqtt()
            before = agent.link.messages_in
            own = {device_topic(agent.device_id, DeviceChannel.DESIRED),
                   device_topic(agent.device_id, DeviceChannel.ACK)}
            for topic, payload in sent:
                await controller.publish(topic, payload)
            expected = sum(1 for t, _ in sent if t in own)
            await wait_for_async(lambda: agent.link.messages_in >= before + expected, 20,
                             "the fuzzed messages to reach the agent")
            assert_agent_healthy(agent)
            assert agent.dropped_messages["malformed"] > 0
            # and it still does its job: a valid model activates
            await activate(agent, controller, iris_models.a, timeout=30)
            assert agent.predict(iris_models.rows[:3])

    asyncio.run(scenario())
    assert failures == [], f"unhandled exceptions in the agent's event loop: {failures[:3]}"


# -- the controller ----------------------------------------------------------------------------

def test_controller_bridge_survives_random_input(fresh_broker: BrokerProcess, tmp_path: Path,
                                                 iris_models: IrisModels) -> None:
    failures: list[dict[str, Any]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: failures.append(ctx))
        controller = Controller(ControllerConfig(data_dir=tmp_path, broker=fresh_broker.address))
        controller.push_model(iris_models.b.manifest, iris_models.b.data)
        await controller.start()
        try:
            bridge = controller.bridge
            valid = _controller_valid(iris_models.b.manifest.artifact.sha256)

            @given(topic=controller_topics(), payload=payloads(valid))
            @FUZZ
            def direct(topic: str, payload: bytes) -> None:
                bridge._on_message(topic, payload)

            direct()
            queue = bridge._queue
            assert queue is not None and bridge._worker is not None
            deadline = time.monotonic() + 60
            while not queue.empty():
                assert not bridge._worker.done(), "the storage worker died"
                assert time.monotonic() < deadline, "the storage worker is stuck"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            assert not bridge._worker.done(), "the storage worker died"
            assert bridge.link.connected and bridge.link.handler_errors == 0
            assert bridge.stats["dropped_malformed"] > 0
            assert bridge.stats["store_failures"] == 0, dict(bridge.stats)
            controller.fleet.list_devices()  # the database still answers
        finally:
            await controller.stop()

    asyncio.run(scenario())
    assert failures == [], f"unhandled exceptions in the controller's event loop: {failures[:3]}"


def test_controller_process_survives_random_mqtt_input(fresh_broker: BrokerProcess,
                                                       tmp_path: Path,
                                                       iris_models: IrisModels) -> None:
    proc, url = start_controller(tmp_path / "controller", fresh_broker)
    client = ControllerClient(url, timeout=5)
    probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ew-fuzz-{uuid.uuid4().hex[:6]}")
    acks: list[bytes] = []
    probe.on_message = lambda c, u, m: acks.append(bytes(m.payload))
    probe.connect(fresh_broker.host, fresh_broker.port)
    probe.loop_start()
    try:
        client.push_version(iris_models.b.manifest, iris_models.b.data)
        valid = _controller_valid(iris_models.b.manifest.artifact.sha256)
        sent = 0

        @given(topic=controller_topics(mqtt_safe=True), payload=payloads(valid))
        @OVER_MQTT
        def over_mqtt(topic: str, payload: bytes) -> None:
            nonlocal sent
            info = probe.publish(topic, payload, qos=1)
            info.wait_for_publish(timeout=10)
            sent += 1
            assert proc.poll() is None, "the controller process exited"

        over_mqtt()
        assert sent >= 50
        health = client.health()
        assert health["mqtt_connected"] and health["bridge"].get("dropped_malformed", 0) > 0
        # valid traffic afterwards is still stored and acknowledged
        device = f"fuzz-after-{uuid.uuid4().hex[:6]}"
        info = probe.subscribe(device_topic(device, DeviceChannel.ACK), qos=1)
        assert info[0] == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.3)
        batch = TelemetryBatch(1, 1, [{"seq": 1, "kind": "error", "ts": time.time()}])
        probe.publish(device_topic(device, DeviceChannel.TELEMETRY), encode(batch),
                      qos=1).wait_for_publish(timeout=10)
        deadline = time.monotonic() + 15
        while not acks and time.monotonic() < deadline:
            time.sleep(0.05)
        assert acks and decode(acks[-1], Ack).last_seq == 1
        assert client.telemetry_count(device) == 1
        assert proc.poll() is None
    finally:
        probe.loop_stop()
        probe.disconnect()
        client.close()
        stop_process(proc)
    log = (tmp_path / "controller" / "controller.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
