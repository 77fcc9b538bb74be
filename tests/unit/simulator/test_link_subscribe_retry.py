"""The MQTT link subscribes again when the broker refuses a subscription (SUBACK failure code).

A clustered broker (NATS with JetStream) refuses a subscription it cannot set up in time; a
device whose ``desired`` subscription was refused would otherwise never hear of a rollout until
its next reconnect. No broker here: paho's subscribe and SUBACK callback are driven directly.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from edgewise_mqtt.link import BrokerAddress, MqttLink
from tests.harness.waiting import wait_for_async


@dataclass(frozen=True)
class Reason:
    is_failure: bool


def test_a_refused_subscription_is_tried_again_and_a_granted_one_is_not() -> None:
    async def scenario() -> tuple[list[str], int]:
        link = MqttLink("ew-test-retry", BrokerAddress("127.0.0.1", 1), on_message=lambda t, p: None)
        link._loop = asyncio.get_running_loop()
        link.connected = True
        calls: list[str] = []

        def subscribe(topic: str, qos: int = 0) -> tuple[int, int]:
            calls.append(topic)
            return 0, len(calls)

        link.client.subscribe = subscribe  # type: ignore[method-assign]
        link.subscribe("ew/v1/dev/d1/desired")
        link.subscribe("ew/v1/dev/d1/ack")
        link._handle_subscribe(link.client, None, 1, [Reason(True)], None)  # desired: refused
        link._handle_subscribe(link.client, None, 2, [Reason(False)], None)  # ack: granted
        await wait_for_async(lambda: len(calls) == 3, 10, "the refused subscription again")
        link._handle_subscribe(link.client, None, 3, [Reason(False)], None)  # granted now
        return calls, link.subscribe_refused

    calls, refused = asyncio.run(scenario())
    assert calls == ["ew/v1/dev/d1/desired", "ew/v1/dev/d1/ack", "ew/v1/dev/d1/desired"]
    assert refused == 1


def test_no_retry_after_the_connection_is_lost() -> None:
    async def scenario() -> list[str]:
        link = MqttLink("ew-test-retry2", BrokerAddress("127.0.0.1", 1),
                        on_message=lambda t, p: None)
        link._loop = asyncio.get_running_loop()
        link.connected = True
        calls: list[str] = []

        def subscribe(topic: str, qos: int = 0) -> tuple[int, int]:
            calls.append(topic)
            return 0, len(calls)

        link.client.subscribe = subscribe  # type: ignore[method-assign]
        link.subscribe("ew/v1/dev/d1/desired")
        link._handle_subscribe(link.client, None, 1, [Reason(True)], None)
        link.connect_count += 1  # a reconnect meanwhile: on_connect subscribes afresh
        # the first retry was due after 1 s: it must not come (the check holds for 1.5 s)
        loop = asyncio.get_running_loop()
        until = loop.time() + 1.5
        while loop.time() < until:
            assert calls == ["ew/v1/dev/d1/desired"]
            await asyncio.sleep(0.05)
        return calls

    assert asyncio.run(scenario()) == ["ew/v1/dev/d1/desired"]
