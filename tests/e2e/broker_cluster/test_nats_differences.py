"""What NATS's MQTT layer does differently from Mosquitto, measured on a 3-node cluster.

Each test pins one difference that matters to Edgewise and its consequence (docs/scaling.md,
"NATS"): retained messages work across nodes; QoS 2 is not supported; ``$share`` subscriptions
deliver nothing (so controller replicas cannot split the fleet's messages on NATS); a topic with
a ``.`` or a space is refused (a device id with a dot cannot speak MQTT through NATS); a client id
taken over from another node; payloads above Edgewise's sizes pass.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from edgewise_mqtt.link import BrokerAddress, MqttLink
from edgewise_wire.topics import DeviceChannel, device_topic, device_wildcard
from simulator.nats_cluster import NatsCluster
from tests.harness.fixtures import require_nats_server
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker, pytest.mark.slow]


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    def __call__(self, topic: str, payload: bytes) -> None:
        self.messages.append((topic, payload))


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """One cluster for this module's probes (none of them kills a node)."""
    require_nats_server()
    cluster = NatsCluster(tmp_path_factory.mktemp("nats"))
    cluster.start()
    yield cluster
    cluster.stop()


async def link(name: str, address: BrokerAddress, inbox: Inbox | None = None,
               reconnect_min_s: float = 0.2) -> MqttLink:
    client = MqttLink(f"ew-test-{name}-{os.urandom(3).hex()}", address,
                      on_message=inbox or Inbox(), reconnect_min_s=reconnect_min_s)
    await client.start(timeout=20)
    return client


def test_retained_desired_state_reaches_a_device_on_another_node(
        nats_cluster: NatsCluster) -> None:
    async def scenario() -> list[tuple[str, bytes]]:
        a, b, _ = nats_cluster.addresses
        controller = await link("controller", a)
        await controller.publish_and_wait(device_topic("dev-1", DeviceChannel.DESIRED), b"v2",
                                          retain=True, timeout=20)
        inbox = Inbox()
        device = await link("device", b, inbox)
        await device.subscribe_and_wait(device_topic("dev-1", DeviceChannel.DESIRED), timeout=20)
        await wait_for_async(lambda: inbox.messages, 20, "the retained desired state")
        await controller.stop()
        await device.stop()
        return inbox.messages

    assert asyncio.run(scenario()) == [(device_topic("dev-1", DeviceChannel.DESIRED), b"v2")]


def test_share_subscriptions_are_accepted_but_deliver_nothing(nats_cluster: NatsCluster) -> None:
    """Controller replicas split the fleet with ``$share/group/...`` on Mosquitto, EMQX, HiveMQ;
    NATS 2.9 grants the subscription and never delivers on it."""
    async def scenario() -> tuple[int, int]:
        a, b, c = nats_cluster.addresses
        shared, plain = Inbox(), Inbox()
        replica = await link("replica", a, shared)
        await replica.subscribe_and_wait(
            "$share/ew/" + device_wildcard(DeviceChannel.TELEMETRY), timeout=20)  # granted
        watcher = await link("watcher", b, plain)
        await watcher.subscribe_and_wait(device_wildcard(DeviceChannel.TELEMETRY), timeout=20)
        device = await link("device", c)
        for i in range(10):
            await device.publish_and_wait(device_topic(f"dev-{i}", DeviceChannel.TELEMETRY),
                                          b"batch", timeout=20)
        await wait_for_async(lambda: len(plain.messages) == 10, 20, "the plain subscriber")
        for client in (replica, watcher, device):
            await client.stop()
        return len(shared.messages), len(plain.messages)

    assert asyncio.run(scenario()) == (0, 10)


def test_qos_2_and_a_dot_in_a_topic_cost_the_connection(nats_cluster: NatsCluster) -> None:
    """Edgewise publishes at QoS 0 and 1 only. A device id may contain '.', which NATS cannot
    carry in an MQTT topic (it is NATS's subject separator): such a device is disconnected at
    its first publish, over and over."""
    async def scenario() -> dict[str, int]:
        a = nats_cluster.addresses[0]
        drops: dict[str, int] = {}
        for case, topic, qos in (("qos2", "ew/v1/q2", 2),
                                 ("dot", device_topic("line.4", DeviceChannel.REPORTED), 1),
                                 ("space", "ew/v1/dev/a b/reported", 1),
                                 ("plain", device_topic("line-4", DeviceChannel.REPORTED), 1)):
            client = await link(case, a, reconnect_min_s=30)
            client.publish(topic, b"x", qos=qos)
            try:
                await wait_for_async(lambda c=client: not c.connected, 3, "a disconnect",
                                     interval=0.05)
                drops[case] = 1
            except AssertionError:
                drops[case] = 0
            await client.stop()
        return drops

    assert asyncio.run(scenario()) == {"qos2": 1, "dot": 1, "space": 1, "plain": 0}


def test_a_client_id_connecting_to_another_node_takes_the_session_over(
        nats_cluster: NatsCluster) -> None:
    async def scenario() -> tuple[bool, bool]:
        a, b, _ = nats_cluster.addresses
        first = MqttLink("ew-agent-twin", a, on_message=Inbox(), reconnect_min_s=30)
        await first.start(timeout=20)
        second = MqttLink("ew-agent-twin", b, on_message=Inbox(), reconnect_min_s=30)
        await second.start(timeout=20)
        await wait_for_async(lambda: not first.connected, 20, "the first connection to drop")
        result = (first.connected, second.connected)
        first.kill()
        await second.stop()
        return result

    assert asyncio.run(scenario()) == (False, True)


def test_payloads_far_above_edgewise_sizes_cross_the_cluster(nats_cluster: NatsCluster) -> None:
    """Edgewise sends 64 KiB chunks and control messages of at most 1 MiB; 8 MiB passes."""
    async def scenario() -> list[int]:
        a, b, _ = nats_cluster.addresses
        inbox = Inbox()
        receiver = await link("receiver", b, inbox)
        await receiver.subscribe_and_wait("ew/v1/big/#", timeout=20)
        sender = await link("sender", a)
        sizes = [64 * 1024, 1024 * 1024 + 1, 8 * 1024 * 1024]
        for size in sizes:
            await sender.publish_and_wait(f"ew/v1/big/{size}", b"x" * size, timeout=30)
        await wait_for_async(lambda: len(inbox.messages) == len(sizes), 30, "every payload")
        await sender.stop()
        await receiver.stop()
        return [len(p) for _, p in inbox.messages]

    assert asyncio.run(scenario()) == [64 * 1024, 1024 * 1024 + 1, 8 * 1024 * 1024]
