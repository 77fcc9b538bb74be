"""Replay-proof agent orders, end to end: a real broker, a real ``edgewise controller serve``, a
real ``edgewise-agent-launcher`` running a real agent daemon that trusts the controller's key,
and an attacker with a plain MQTT client on the broker.

Agent 2.0.0 is deployed, then 3.0.0; the captured (validly signed, unexpired) retained order for
2.0.0 is published again: the agent refuses it (its seal's counter is below the 3.0.0 order's),
counts the refusal, and stays on 3.0.0 -- nothing is staged, the launcher starts nothing.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgewise_wire import DesiredAgent, decode
from edgewise_wire.topics import DeviceChannel, device_topic
from simulator.broker import BrokerProcess
from tests.e2e.agent_update.launchers import (
    agent_health,
    agent_script,
    agent_update,
    make_archive,
    push_and_deploy,
    reported_version,
    trusting_fleet,
    wait_committed,
)
from tests.harness.waiting import holds_for, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]


def retained(broker: BrokerProcess, topic: str) -> bytes:
    """The retained message on ``topic``, as any client on the broker can read it."""
    got: list[bytes] = []
    event = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"tap-{time.time_ns()}")

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            got.append(bytes(msg.payload))
            event.set()

    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        assert event.wait(30), f"no retained message on {topic}"
    finally:
        client.loop_stop()
        client.disconnect()
    return got[0]


def publish_retained(broker: BrokerProcess, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"attacker-{time.time_ns()}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def test_a_captured_older_agent_order_is_refused_and_the_device_stays(
        broker: BrokerProcess, tmp_path: Path) -> None:
    with trusting_fleet(tmp_path, broker, "replay") as (env, launchers):
        (launcher,) = launchers.values()
        device_id = launcher.agent.device_id
        topic = device_topic(device_id, DeviceChannel.AGENT_DESIRED)

        archive2, _ = make_archive(tmp_path, agent_script("v2", launcher.root))
        push_and_deploy(env, launcher, archive2, "2.0.0")
        wait_committed(launcher, "b", "agent 2.0.0 committed")
        captured = retained(broker, topic)
        order2 = decode(captured, DesiredAgent)
        assert order2.seal is not None and order2.seal["device_id"] == device_id

        archive3, _ = make_archive(tmp_path, agent_script("v3", launcher.root))
        push_and_deploy(env, launcher, archive3, "3.0.0")
        wait_committed(launcher, "a", "agent 3.0.0 committed")
        wait_for(lambda: (u := agent_update(launcher)) and u.get("state") == "current"
                 and u.get("running") == "3.0.0", 60, "agent 3.0.0 reports current")
        order3 = decode(retained(broker, topic), DesiredAgent)
        assert order3.seal is not None and order3.seal["counter"] > order2.seal["counter"]
        assert agent_health(launcher).get("agent_seal_counter") == order3.seal["counter"]
        assert launcher.started() == ["v1", "v2", "v3"]

        # the attacker republishes the captured order for 2.0.0: signed, unexpired, and not the
        # version that runs (without the seal the agent would stage it: a downgrade)
        publish_retained(broker, topic, captured)
        status = wait_for(lambda: (h := agent_health(launcher)) and h.get("refused", {}).get("replay")
                          and h, 60, lambda: f"the replay refused; {agent_health(launcher)}; "
                                             f"{launcher.log_text()[-2000:]}")
        assert status["refused"]["replay"] == 1
        update = status["agent_update"]
        assert update["running"] == "3.0.0" and update["target"] == "3.0.0"
        assert "replay refused" in (update["error"] or ""), update
        assert status["agent_seal_counter"] == order3.seal["counter"]
        holds_for(lambda: launcher.started() == ["v1", "v2", "v3"]
                  and launcher.status()["phase"] == "committed", 5, "nothing staged")
        assert reported_version(env, device_id) == "3.0.0"
