"""``AgentDeployer``: device ids all valid or nothing sent; what is sent verifies on a device as
a signed agent manifest of the registered version."""

from __future__ import annotations

import asyncio
import time

import pytest

from controller.agent_bundles.deploy import AgentDeployer
from controller.agent_bundles.registry import AgentBundles
from controller.errors import NotFoundError, ValidationError
from controller.fleet.seal_counters import SealCounters
from controller.models.artifact_store import ArtifactStore
from controller.security.desired_signer import DesiredSigner
from controller.security.signing import generate_keypair
from controller.storage.db import Database
from edgewise_wire import DesiredAgent, decode, encode
from edgewise_wire.envelope import verify_agent_envelope
from edgewise_wire.manifest import AgentManifest
from edgewise_wire.seal import verify_seal
from tests.integration.controller.store.test_agent_bundles import V1


def deployer(db: Database, store: ArtifactStore,
             sent: list[tuple[str, DesiredAgent]]) -> tuple[AgentDeployer, dict[str, bytes]]:
    private, public, key_id = generate_keypair()
    bundles = AgentBundles(db, store)
    bundles.register("0.2.0", V1)
    signer = DesiredSigner(lambda: private, 3600.0)
    return (AgentDeployer(bundles, lambda: ["dev-a", "dev-b"], signer,
                          lambda d, m: sent.append((d, m))), {key_id: public})


def test_a_deployment_sends_a_verifiable_agent_manifest(db: Database,
                                                        store: ArtifactStore) -> None:
    sent: list[tuple[str, DesiredAgent]] = []
    deploy, trusted = deployer(db, store, sent)
    result = asyncio.run(deploy.deploy("0.2.0"))
    assert result["devices"] == ["dev-a", "dev-b"] and [d for d, _ in sent] == ["dev-a", "dev-b"]
    message = decode(encode(sent[0][1]), DesiredAgent)
    assert message.signed is not None and message.rollout_id == result["rollout_id"]
    manifest = AgentManifest.from_dict(verify_agent_envelope(
        message.signed, trusted, now=message.ts, device_class="pi4"))
    assert manifest.version == "0.2.0" and manifest.artifact.sha256 == result["sha256"]


@pytest.mark.parametrize("devices", [["dev-a", "a/b"], ["#"], ["dev-a", ""], ["+"]],
                         ids=["slash", "hash", "empty", "plus"])
def test_an_invalid_device_id_sends_nothing(db: Database, store: ArtifactStore,
                                            devices: list[str]) -> None:
    sent: list[tuple[str, DesiredAgent]] = []
    deploy, _ = deployer(db, store, sent)
    with pytest.raises(ValidationError, match="invalid device id"):
        asyncio.run(deploy.deploy("0.2.0", devices))
    assert sent == []


def test_an_unknown_version_sends_nothing(db: Database, store: ArtifactStore) -> None:
    sent: list[tuple[str, DesiredAgent]] = []
    deploy, _ = deployer(db, store, sent)
    with pytest.raises(NotFoundError):
        asyncio.run(deploy.deploy("9.9.9", ["dev-a"]))
    assert sent == []


def test_each_device_gets_a_seal_from_the_same_counters_as_model_desired_states(
        db: Database, store: ArtifactStore) -> None:
    private, public, key_id = generate_keypair()
    bundles = AgentBundles(db, store)
    bundles.register("0.2.0", V1)
    counters = SealCounters(db)
    sent: list[tuple[str, DesiredAgent]] = []
    deploy = AgentDeployer(bundles, lambda: ["dev-a", "dev-b"],
                           DesiredSigner(lambda: private, 3600.0, counters=counters.next),
                           lambda d, m: sent.append((d, m)))
    asyncio.run(deploy.deploy("0.2.0"))
    first = {d: decode(encode(m), DesiredAgent) for d, m in sent}
    seals = {}
    for device, message in first.items():
        seals[device] = verify_seal(message.seal, {key_id: public}, device_id=device,
                                    envelope=message.signed, order=None)
        assert seals[device].counter == counters.highest(device)
    # a model desired state in between draws from the same sequence
    model_counter = counters.next(["dev-a"], time.time())["dev-a"]
    assert model_counter > seals["dev-a"].counter
    sent.clear()
    asyncio.run(deploy.deploy("0.2.0", ["dev-a"]))
    again = decode(encode(sent[0][1]), DesiredAgent)
    assert again.seal is not None and again.seal["counter"] > model_counter
