"""Replay protection of agent orders (``desired_agent``) in the device's gate: the seal is
checked against a high-water mark of its own in trust.json, apart from model desired states'.
Pure: real Ed25519 keys, a trust.json in a temporary directory, no broker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.security.desired_signer import DesiredSigner
from controller.security.signing import generate_keypair, sign_agent_manifest, sign_seal
from edge_agent.desired_gate import DesiredGate, Rejected
from edge_agent.trust_state import TrustStore
from edgewise_wire import DesiredAgent, decode, encode
from edgewise_wire.manifest import AgentManifest, ArtifactRef
from tests.unit.edge_agent.update.test_seal_and_key_update_gate import _manifest, _sealed

NOW = 1_750_000_000.0
DEVICE = "pi-7"


@pytest.fixture(scope="module")
def key() -> tuple[bytes, bytes, str]:
    return generate_keypair()


def _envelope(key: tuple[bytes, bytes, str], version: str) -> dict[str, Any]:
    manifest = AgentManifest(version, ArtifactRef.describe(version.encode() * 400, 1024))
    return sign_agent_manifest(manifest.to_dict(), key[0], expires_at=NOW + 3600)


def _order(key: tuple[bytes, bytes, str], version: str, counter: int | None, *,
           device: str = DEVICE, envelope: dict[str, Any] | None = None) -> DesiredAgent:
    signed = _envelope(key, version)
    seal = None if counter is None else sign_seal(
        key[0], device_id=device, counter=counter, issued_at=NOW,
        envelope=envelope if envelope is not None else signed, order=None)
    # as the device receives it off the wire
    return decode(encode(DesiredAgent(signed, "ro-1", NOW, seal=seal)), DesiredAgent)


def _gate(tmp_path: Path, key: tuple[bytes, bytes, str]) -> DesiredGate:
    return DesiredGate({key[2]: key[1]}, device_id=DEVICE, device_class="pi4",
                       max_model_bytes=None, trust=TrustStore(tmp_path))


def _accept(gate: DesiredGate, order: DesiredAgent) -> bool:
    seal, fresh = gate.check_agent_order(order)
    if fresh:
        assert seal is not None
        gate.record_agent(seal)
    return fresh


def test_a_newer_order_passes_a_captured_older_one_is_refused_after_a_restart(
        tmp_path: Path, key: tuple) -> None:
    gate = _gate(tmp_path, key)
    v2, v3 = _order(key, "2.0", 10), _order(key, "3.0", 11)
    assert _accept(gate, v2)
    assert _accept(gate, v3)
    with pytest.raises(Rejected, match="replay refused"):
        gate.check_agent_order(v2)
    assert gate.refusals["replay"] == 1
    # durably: a restarted agent (a new gate on the same trust.json) refuses it as well
    stored = json.loads((tmp_path / "trust.json").read_text())
    assert stored["agent_counter"] == 11 and stored["highest_counter"] == 0
    again = _gate(tmp_path, key)
    with pytest.raises(Rejected, match="replay refused"):
        again.check_agent_order(v2)


def test_the_retained_copy_delivered_again_passes_without_being_new(
        tmp_path: Path, key: tuple) -> None:
    gate = _gate(tmp_path, key)
    order = _order(key, "2.0", 10)
    assert _accept(gate, order)
    seal, fresh = gate.check_agent_order(order)
    assert seal is not None and seal.counter == 10 and fresh is False
    # the same counter under another seal (over another envelope) is no redelivery
    with pytest.raises(Rejected, match="replay refused"):
        gate.check_agent_order(_order(key, "2.1", 10))
    assert gate.refusals["replay"] == 1


def test_an_order_sealed_for_another_device_or_moved_onto_another_envelope_is_refused(
        tmp_path: Path, key: tuple) -> None:
    gate = _gate(tmp_path, key)
    with pytest.raises(Rejected, match="another device|is for device"):
        gate.check_agent_order(_order(key, "2.0", 10, device="pi-8"))
    assert gate.refusals["other_device"] == 1
    with pytest.raises(Rejected, match="another manifest envelope"):
        gate.check_agent_order(_order(key, "3.0", 11, envelope=_envelope(key, "2.0")))
    # a model desired state's seal names the model envelope: it does not carry an agent order
    model = _sealed(_manifest(1), key[0], 12, device=DEVICE)
    moved = DesiredAgent(_envelope(key, "2.0"), "ro-1", NOW, seal=model.seal)
    with pytest.raises(Rejected, match="another manifest envelope"):
        gate.check_agent_order(moved)
    assert gate.state.agent_counter == 0


def test_unsealed_orders_pass_only_until_the_first_sealed_one(tmp_path: Path,
                                                             key: tuple) -> None:
    gate = _gate(tmp_path, key)
    assert gate.check_agent_order(_order(key, "2.0", None)) == (None, False)
    assert _accept(gate, _order(key, "3.0", 10))
    with pytest.raises(Rejected, match="unsealed"):
        gate.check_agent_order(_order(key, "2.0", None))
    assert gate.refusals["unsealed"] == 1


def test_model_desired_states_and_agent_orders_keep_their_own_high_water_marks(
        tmp_path: Path, key: tuple) -> None:
    gate = _gate(tmp_path, key)
    model = _sealed(_manifest(1), key[0], 10, device=DEVICE)
    accepted = gate.check(model, None, now=NOW)
    assert accepted.fresh and accepted.seal is not None
    gate.record(accepted.seal)
    assert _accept(gate, _order(key, "2.0", 11))  # drawn from the same counter sequence
    # the broker delivers the model desired state again (counter 10 < 11): still the same one
    assert gate.check(model, None, now=NOW).fresh is False
    # and an agent order sealed before the model's newest seal is still new to the agent stream
    newer = gate.check(_sealed(_manifest(2), key[0], 20, device=DEVICE), None, now=NOW)
    assert newer.fresh and newer.seal is not None
    gate.record(newer.seal)
    assert _accept(gate, _order(key, "3.0", 15))
    assert (gate.state.highest_counter, gate.state.agent_counter) == (20, 15)


def test_the_signer_seals_each_device_from_the_counter_source(key: tuple) -> None:
    issued: list[list[str]] = []

    def counters(ids: Any, now: float) -> dict[str, int]:
        issued.append(list(ids))
        return {d: 100 + i for i, d in enumerate(ids)}

    signer = DesiredSigner(lambda: key[0], counters=counters)
    manifest = AgentManifest("2.0", ArtifactRef.describe(b"agent" * 400, 1024))
    out = signer.agent_desired(manifest, ["pi-7", "pi-8", "pi-7"], now=NOW, rollout_id="ro")
    assert [d for d, _ in out] == ["pi-7", "pi-8"] and issued == [["pi-7", "pi-8"]]
    assert out[0][1].signed == out[1][1].signed  # one envelope for all
    gate = DesiredGate({key[2]: key[1]}, device_id="pi-8", device_class="pi4",
                       max_model_bytes=None)
    seal, fresh = gate.check_agent_order(decode(encode(out[1][1]), DesiredAgent))
    assert fresh and seal is not None and seal.counter == 101
    with pytest.raises(Rejected, match="is for device"):
        gate.check_agent_order(out[0][1])
    unsealed = DesiredSigner(lambda: key[0]).agent_desired(manifest, ["pi-7"], now=NOW)
    assert unsealed[0][1].seal is None
