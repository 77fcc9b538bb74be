"""Replay-proof desired states and signing keys rotated over the air, end to end: a real
controller process, a real Mosquitto, enforcing agents trusting the controller's keys, and an
attacker with a plain MQTT client on the broker (as a compromised broker host would be).

* replay: a captured, validly signed v2 desired state published again after a signed rollback to
  v1 is refused and counted (its seal's counter is old), the device stays on v1; the rollback
  order replayed after the next upgrade is refused too (single-use); a desired state sealed for
  one device is refused by another;
* rotation: key B added by a key update signed by A, B made the signing key, A retired; one
  device is offline from before B was added until after A was retired and catches up from the
  retained key update and desired state when it comes back; an envelope signed by A is refused
  afterwards.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from controller.cli.client import ControllerClient
from controller.security.signing import sign_manifest, sign_seal
from controller.security.signing_keys import SigningKeys
from edge_agent.agent import EdgeAgent
from edgewise_wire import Desired, decode, encode
from edgewise_wire.topics import DeviceChannel, device_topic
from simulator.broker import BrokerProcess
from simulator.fleet import SimulatedFleet
from simulator.keys import controller_trusted_keys
from tests.e2e.signing.test_signed_updates import (  # noqa: F401 (fixtures)
    TIMEOUT,
    Converted,
    controller,
    models,
)
from tests.harness.waiting import wait_for_async


class Wiretap:
    """A plain MQTT client on the broker: records every desired state and can publish any."""

    def __init__(self, broker: BrokerProcess) -> None:
        self.seen: dict[str, list[bytes]] = defaultdict(list)
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"tap-{time.time_ns()}")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe("ew/v1/dev/+/desired", qos=1)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.seen[msg.topic].append(bytes(msg.payload))

    def last(self, device_id: str, version: int | None) -> Desired | None:
        """The last desired state seen for the device naming ``version`` (None: no model)."""
        with self._lock:
            payloads = list(self.seen[device_topic(device_id, DeviceChannel.DESIRED)])
        for payload in reversed(payloads):
            desired = decode(payload, Desired)
            if (desired.manifest.version if desired.manifest else None) == version:
                return desired
        return None

    def inject(self, device_id: str, desired: Desired) -> None:
        self.client.publish(device_topic(device_id, DeviceChannel.DESIRED), encode(desired),
                            qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _where(agents: list[EdgeAgent]) -> str:
    return str([(a.device_id, a.state, str(a.active), a.last_error,
                 dict(a.updater.gate.refusals)) for a in agents])


def test_captured_desired_states_are_refused_after_a_signed_rollback(
        fresh_broker: BrokerProcess, tmp_path: Path, models: Converted,  # noqa: F811
        controller: tuple[Path, ControllerClient]) -> None:  # noqa: F811
    workdir, client = controller
    v1 = client.push_version(models.v1.manifest, models.v1.artifact)["version"]
    v2 = client.push_version(models.v2.manifest, models.v2.artifact)["version"]

    async def scenario() -> None:
        fleet = SimulatedFleet(fresh_broker.address, 2, tmp_path / "devices", prefix="rp",
                               trusted_keys=controller_trusted_keys(workdir))
        tap = Wiretap(fresh_broker)
        await fleet.start()
        a, b = fleet.agents
        ids = [a.device_id, b.device_id]
        try:
            await wait_for_async(lambda: len(client.list_devices()) >= 2, TIMEOUT,
                                 "2 devices known", in_thread=True)
            await asyncio.to_thread(client.deploy, "iris", v1, ids)
            assert await fleet.wait_for_version("iris", v1, TIMEOUT), _where(fleet.agents)
            await asyncio.to_thread(client.deploy, "iris", v2, ids, {"duration_s": 0.5})
            assert await fleet.wait_for_version("iris", v2, TIMEOUT), _where(fleet.agents)
            captured_v2 = await wait_for_async(lambda: tap.last(a.device_id, v2), TIMEOUT,
                                               "the v2 desired state on the wire")
            assert captured_v2.seal is not None and captured_v2.seal["device_id"] == a.device_id

            # v2 is withdrawn: a signed rollback to v1
            await asyncio.to_thread(client.deploy, "iris", v1, ids)
            assert await fleet.wait_for_version("iris", v1, TIMEOUT), _where(fleet.agents)
            rollback = await wait_for_async(lambda: tap.last(a.device_id, v1), TIMEOUT,
                                            "the rollback on the wire")
            assert rollback.rollback_order is not None
            highest = a.updater.gate.state.highest_counter
            assert highest == rollback.seal["counter"] > captured_v2.seal["counter"]

            # the attacker replays the captured v2: signed, unexpired, an upgrade from v1
            tap.inject(a.device_id, captured_v2)
            await wait_for_async(lambda: a.updater.gate.refusals["replay"] >= 1
                                 and "replay refused" in (a.last_error or ""), TIMEOUT,
                                 lambda: f"the replay refused: {_where([a])}")
            assert a.active is not None and a.active.version == v1
            device = await wait_for_async(
                lambda: (d := client.device(a.device_id)) and "replay refused" in
                (d.get("last_error") or "") and d, TIMEOUT,
                "the controller to see the refusal", in_thread=True)
            assert (device["active_model"], device["active_version"]) == ("iris", v1)

            # the same capture on the other device: sealed for another
            tap.inject(b.device_id, captured_v2)
            await wait_for_async(lambda: b.updater.gate.refusals["other_device"] >= 1
                                 and f"seal is for device '{a.device_id}'" in (b.last_error or ""),
                                 TIMEOUT, lambda: f"the foreign seal refused: {_where([b])}")
            assert b.active is not None and b.active.version == v1

            # forward to v2 again; the captured rollback order is used up
            await asyncio.to_thread(client.deploy, "iris", v2, ids, {"duration_s": 0.5})
            assert await fleet.wait_for_version("iris", v2, TIMEOUT), _where(fleet.agents)
            tap.inject(a.device_id, rollback)
            await wait_for_async(lambda: a.updater.gate.refusals["replay"] >= 2, TIMEOUT,
                                 lambda: f"the replayed rollback refused: {_where([a])}")
            assert a.active is not None and a.active.version == v2

            # the highest counter survives a crash: after a restart the capture is still refused
            fleet.kill(a.device_id)
            a = await fleet.restart(a.device_id, wait_connected=True)
            await wait_for_async(lambda: a.state == "active", TIMEOUT, "restarted agent at rest")
            tap.inject(a.device_id, rollback)
            await wait_for_async(lambda: a.updater.gate.refusals["replay"] >= 1, TIMEOUT,
                                 lambda: f"the replay refused after a restart: {_where([a])}")
            assert a.active is not None and a.active.version == v2
        finally:
            tap.close()
            await fleet.stop()

    asyncio.run(scenario())


def test_a_full_key_rotation_over_the_air_with_a_device_offline(
        fresh_broker: BrokerProcess, tmp_path: Path, models: Converted,  # noqa: F811
        controller: tuple[Path, ControllerClient]) -> None:  # noqa: F811
    workdir, client = controller
    keys = SigningKeys.for_data_dir(workdir)
    key_a = keys.active()
    assert key_a is not None
    v1 = client.push_version(models.v1.manifest, models.v1.artifact)["version"]
    v2 = client.push_version(models.v2.manifest, models.v2.artifact)["version"]

    def trusts(agent: EdgeAgent, *key_ids: str) -> bool:
        return set(agent.updater.gate.trusted_keys) == set(key_ids)

    async def scenario() -> None:
        fleet = SimulatedFleet(fresh_broker.address, 2, tmp_path / "devices", prefix="rot",
                               trusted_keys=controller_trusted_keys(workdir))
        await fleet.start()
        online, offline = fleet.agents
        ids = [online.device_id, offline.device_id]
        tap = Wiretap(fresh_broker)
        try:
            await wait_for_async(lambda: len(client.list_devices()) >= 2, TIMEOUT,
                                 "2 devices known", in_thread=True)
            await asyncio.to_thread(client.deploy, "iris", v1, ids)
            assert await fleet.wait_for_version("iris", v1, TIMEOUT), _where(fleet.agents)

            fleet.kill(offline.device_id)  # offline for the whole rotation
            # 1. add B: trusted, not signing; devices learn it from a key update signed by A
            key_b = await asyncio.to_thread(keys.create)
            await wait_for_async(lambda: trusts(online, key_a.key_id, key_b.key_id), TIMEOUT,
                                 lambda: f"the online device to trust B: {_where([online])}")
            # 2. B signs
            await asyncio.to_thread(keys.activate, key_b.key_id)
            await asyncio.to_thread(client.deploy, "iris", v2, ids, {"duration_s": 0.5})
            await wait_for_async(lambda: online.active is not None
                                 and online.active.version == v2 and online.state == "active",
                                 TIMEOUT, lambda: f"v2 signed by B: {_where([online])}")
            signed_by_b = tap.last(online.device_id, v2)
            assert signed_by_b is not None and signed_by_b.envelope is not None
            assert signed_by_b.envelope["signature"]["key_id"] == key_b.key_id
            # 3. retire A
            await asyncio.to_thread(keys.retire, key_a.key_id)
            await wait_for_async(lambda: trusts(online, key_b.key_id), TIMEOUT,
                                 lambda: f"the online device to drop A: {_where([online])}")

            # the offline device comes back trusting only A (agent.toml): the retained key
            # update (signed by B and by A) and the retained v2 signed by B bring it up to date
            offline = await fleet.restart(offline.device_id, wait_connected=True)
            await wait_for_async(lambda: trusts(offline, key_b.key_id), TIMEOUT,
                                 lambda: f"the returning device to trust B only: "
                                         f"{_where([offline])}")
            assert await fleet.wait_for_version("iris", v2, TIMEOUT), _where(fleet.agents)

            # an envelope signed by the retired A (say A leaked) is refused, sealed or not
            private_a = (keys.dir / f"{key_a.key_id}.key").read_bytes()
            for agent in (online, offline):
                envelope = sign_manifest(models.v1.manifest.to_dict(), private_a,
                                         expires_at=time.time() + 600)
                forged = Desired("dep-forged", models.v1.manifest, envelope=envelope,
                                 seal=sign_seal(private_a, device_id=agent.device_id,
                                                counter=2 ** 62, issued_at=time.time(),
                                                envelope=envelope, order=None))
                before = agent.updater.rejected
                tap.inject(agent.device_id, forged)
                # counted first, then reported: wait for both
                await wait_for_async(lambda a=agent, n=before: a.updater.rejected > n
                                     and key_a.key_id in (a.last_error or ""), TIMEOUT,
                                     lambda a=agent: f"the A-signed envelope refused: "
                                                     f"{_where([a])}")
                assert "does not trust" in (agent.last_error or "")
                assert agent.active is not None and agent.active.version == v2
            # and the trust survives a restart although agent.toml still lists A
            fleet.kill(online.device_id)
            online = await fleet.restart(online.device_id, wait_connected=True)
            assert trusts(online, key_b.key_id)
        finally:
            tap.close()
            await fleet.stop()

    asyncio.run(scenario())
