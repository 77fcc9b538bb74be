"""Signed updates end to end: a real controller process (``simulator.demo.start_controller``),
real Mosquitto, real agents in enforce mode trusting the controller's keys.

* v1, then v2: plain signed upgrades;
* v1 again by ``POST /deployments``: a downgrade, accepted because the controller attaches a
  signed rollback order addressed to each device;
* a rollout of v2, aborted: the revert to v1 carries an order too;
* a device trusting *another* key set refuses the controller's manifests, names the key it does
  not know, and keeps serving the model it had.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.cli.client import ControllerClient
from controller.security.signing import generate_keypair
from controller.security.signing_keys import SigningKeys
from simulator.broker import BrokerProcess
from simulator.demo import start_controller, stop_process
from simulator.fleet import SimulatedFleet
from simulator.keys import controller_trusted_keys
from simulator.workload import load_dataset

TIMEOUT = 30.0


@dataclass(frozen=True)
class Converted:
    v1: Any
    v2: Any


@pytest.fixture(scope="module")
def models() -> Converted:
    """Two different iris pipelines (different artifacts, so two distinct versions)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from converters import convert_sklearn

    data = load_dataset("iris")

    def convert(c: float) -> Any:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500))
        return convert_sklearn(model.fit(data.features, data.target), data.features,
                               name="iris", labels=data.target,
                               feature_names=data.feature_names)

    return Converted(convert(1.0), convert(0.5))


@pytest.fixture
def controller(fresh_broker: BrokerProcess, tmp_path: Path) -> Iterator[tuple[Path, ControllerClient]]:
    workdir = tmp_path / "controller"
    proc, url = start_controller(workdir, fresh_broker)
    client = ControllerClient(url, timeout=10.0)
    try:
        yield workdir, client
    finally:
        client.close()
        stop_process(proc)


async def until(what: str, check: Any, timeout: float = TIMEOUT) -> Any:
    """Poll ``check()`` (run in a thread: it may call the REST API) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.2)


def test_signed_upgrades_downgrade_by_order_and_an_untrusted_device(
        fresh_broker: BrokerProcess, tmp_path: Path, models: Converted,
        controller: tuple[Path, ControllerClient]) -> None:
    workdir, client = controller
    keys = SigningKeys.for_data_dir(workdir)
    active = keys.active()
    assert active is not None, "the controller creates its signing key at start"
    trusted = controller_trusted_keys(workdir)
    assert trusted and trusted[0] == active.public_pem.decode()
    _, other_pem, other_id = generate_keypair()

    v1 = client.push_version(models.v1.manifest, models.v1.artifact)["version"]
    v2 = client.push_version(models.v2.manifest, models.v2.artifact)["version"]
    row = load_dataset("iris").features[0].tolist()

    async def scenario() -> None:
        fleet = SimulatedFleet(fresh_broker.address, 2, tmp_path / "devices", prefix="sig",
                               trusted_keys=trusted)
        # the odd one out first runs in development mode, to get a model to keep serving
        rogue = SimulatedFleet(fresh_broker.address, 1, tmp_path / "rogue", prefix="rogue")
        await fleet.start()
        await rogue.start()
        ids = [a.device_id for a in fleet.agents]
        rogue_id = rogue.agents[0].device_id
        try:
            await until("3 devices known", lambda: len(client.list_devices()) >= 3)

            # v1 then v2: signed upgrades
            await asyncio.to_thread(client.deploy, "iris", v1, [*ids, rogue_id])
            assert await fleet.wait_for_version("iris", v1, TIMEOUT)
            assert await rogue.wait_for_version("iris", v1, TIMEOUT)
            # with a short probation window: the devices commit once it is over
            await asyncio.to_thread(client.deploy, "iris", v2, ids, {"duration_s": 0.5})
            assert await fleet.wait_for_version("iris", v2, TIMEOUT)

            # back to v1 by a plain deployment: a downgrade, allowed by the signed order
            await asyncio.to_thread(client.deploy, "iris", v1, ids)
            assert await fleet.wait_for_version("iris", v1, TIMEOUT), \
                [(a.device_id, a.state, str(a.active), a.last_error) for a in fleet.agents]

            # a rollout of v2, aborted: its revert to v1 carries an order as well
            view = await asyncio.to_thread(client.create_rollout, {
                "model": "iris", "version": v2, "selector": "", "waves": "100%",
                "soak_seconds": 600, "probation": {"duration_s": 0.5}})
            assert await fleet.wait_for_version("iris", v2, TIMEOUT)
            await asyncio.to_thread(client.rollout_action, str(view["id"]), "abort", "test")
            assert await fleet.wait_for_version("iris", v1, TIMEOUT), \
                [(a.device_id, a.state, str(a.active), a.last_error) for a in fleet.agents]
            await until("the rollout aborted (every revert confirmed)", lambda: client.rollout(
                str(view["id"]))["status"] == "aborted")
            assert all(a.last_error is None or "refused" not in a.last_error
                       for a in fleet.agents)

            # the rogue now trusts another key only: it refuses, names the key, keeps v1
            await rogue.stop()
            rogue = SimulatedFleet(fresh_broker.address, 1, tmp_path / "rogue", prefix="rogue",
                                   trusted_keys=(other_pem.decode(),))
            await rogue.start()
            agent = rogue.agents[0]
            await asyncio.to_thread(client.deploy, "iris", v2, [rogue_id])

            def refused() -> dict[str, Any] | None:
                device = client.device(rogue_id)
                error = device.get("last_error") or ""
                return device if device["state"] == "failed" and f"iris:{v2}" in error \
                    else None

            device = await until("the untrusted device to report the refusal", refused)
            assert active.key_id in device["last_error"], device["last_error"]
            assert other_id in device["last_error"]  # and what it does trust
            assert (device["active_model"], device["active_version"]) == ("iris", v1)
            assert agent.active is not None and agent.active.version == v1
            assert agent.predict(row)  # still serving
        finally:
            await fleet.stop()
            await rogue.stop()

    asyncio.run(scenario())
