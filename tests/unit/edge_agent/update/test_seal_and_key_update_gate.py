"""Replay protection and key updates in the device's gate (edge_agent.desired_gate with
edgewise_wire.seal and edgewise_wire.key_update). Pure: real Ed25519 keys, a trust.json in a
temporary directory, no broker."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from controller.security.signing import (
    generate_keypair,
    sign_key_update,
    sign_manifest,
    sign_rollback_order,
    sign_seal,
)
from edge_agent.desired_gate import DesiredGate, Rejected
from edge_agent.trust_state import TrustStateError, TrustStore
from edgewise_wire import Desired, ModelRef, decode, encode
from edgewise_wire.key_update import KeyUpdateMessage
from edgewise_wire.manifest import ArtifactRef, Manifest, SmokeTest, TensorSpec

NOW = 1_750_000_000.0
DEVICE = "pi-7"


def _manifest(version: int) -> Manifest:
    return Manifest(
        model="iris", version=version, format="onnx", task="classification",
        inputs=(TensorSpec("x", "float32", (None, 2)),),
        outputs=(TensorSpec("label", "int64", (None,)),),
        label_output="label", score_output=None, class_labels=(0, 1),
        feature_names=("a", "b"),
        artifact=ArtifactRef.describe(b"model" * 300 + bytes([version]), chunk_size=1024),
        smoke_tests=(SmokeTest([[1.0, 0.5]], [1]),), smoke_tolerance=1e-4)


def _ref(m: Manifest) -> ModelRef:
    return ModelRef(m.model, m.version, m.artifact.sha256)


def _sealed(m: Manifest, private: bytes, counter: int, *, device: str = DEVICE,
            rollback: bool = False) -> Desired:
    envelope = sign_manifest(m.to_dict(), private, expires_at=NOW + 3600)
    order = sign_rollback_order(private, model=m.model, to_version=m.version, device_id=device,
                                issued_at=NOW - 1, expires_at=NOW + 600) if rollback else None
    seal = sign_seal(private, device_id=device, counter=counter, issued_at=NOW,
                     envelope=envelope, order=order)
    desired = Desired(f"dep-{counter}", m, NOW, envelope=envelope, rollback_order=order,
                      seal=seal)
    return decode(encode(desired), Desired)  # as the device receives it off the wire


@pytest.fixture(scope="module")
def key_a() -> tuple[bytes, bytes, str]:
    return generate_keypair()


def _gate(tmp_path: Path, key: tuple[bytes, bytes, str]) -> DesiredGate:
    return DesiredGate({key[2]: key[1]}, device_id=DEVICE, device_class="pi4",
                       max_model_bytes=None, trust=TrustStore(tmp_path))


def _accept(gate: DesiredGate, desired: Desired, running: ModelRef | None) -> bool:
    accepted = gate.check(desired, running, now=NOW)
    if accepted.fresh:
        assert accepted.seal is not None
        gate.record(accepted.seal)
    return accepted.fresh


def test_a_withdrawn_newer_version_is_refused_after_a_signed_rollback(
        tmp_path: Path, key_a: tuple) -> None:
    gate = _gate(tmp_path, key_a)
    v1, v2 = _manifest(1), _manifest(2)
    assert _accept(gate, _sealed(v1, key_a[0], 10), None)
    captured_v2 = _sealed(v2, key_a[0], 11)
    assert _accept(gate, captured_v2, _ref(v1))
    rollback = _sealed(v1, key_a[0], 12, rollback=True)
    assert _accept(gate, rollback, _ref(v2))
    # the captured v2 is a valid, unexpired, signed upgrade from v1: only its counter is old
    with pytest.raises(Rejected, match="replay refused: counter 11 is not above 12"):
        gate.check(captured_v2, _ref(v1), now=NOW)
    assert gate.refusals["replay"] == 1
    # the rollback order delivered again as it was (the retained copy): nothing new
    assert not _accept(gate, rollback, _ref(v1))
    # after the next upgrade, the old rollback is a replay too: single-use
    assert _accept(gate, _sealed(v2, key_a[0], 13), _ref(v1))
    with pytest.raises(Rejected, match="replay refused"):
        gate.check(rollback, _ref(v2), now=NOW)
    # and all of that survives a restart: trust.json holds the highest counter
    again = _gate(tmp_path, key_a)
    assert again.state.highest_counter == 13
    with pytest.raises(Rejected, match="replay refused"):
        again.check(captured_v2, _ref(v1), now=NOW)


def test_a_seal_for_another_device_or_moved_onto_another_envelope_is_refused(
        tmp_path: Path, key_a: tuple) -> None:
    gate = _gate(tmp_path, key_a)
    with pytest.raises(Rejected, match="seal is for device 'pi-8', this is 'pi-7'"):
        gate.check(_sealed(_manifest(2), key_a[0], 5, device="pi-8"), None, now=NOW)
    assert gate.refusals["other_device"] == 1
    genuine = _sealed(_manifest(2), key_a[0], 5)
    other = _sealed(_manifest(3), key_a[0], 4)
    moved = dataclasses.replace(other, seal=genuine.seal)
    with pytest.raises(Rejected, match="another manifest envelope"):
        gate.check(moved, None, now=NOW)
    stranger = generate_keypair()
    forged = dataclasses.replace(genuine, seal=sign_seal(
        stranger[0], device_id=DEVICE, counter=99, issued_at=NOW,
        envelope=genuine.envelope, order=None))
    with pytest.raises(Rejected, match="does not trust"):
        gate.check(forged, None, now=NOW)
    assert gate.state.highest_counter == 0  # nothing refused was recorded


def test_unsealed_desired_states_pass_only_until_the_first_sealed_one(
        tmp_path: Path, key_a: tuple) -> None:
    gate = _gate(tmp_path, key_a)
    legacy = dataclasses.replace(_sealed(_manifest(1), key_a[0], 1), seal=None)
    assert not _accept(gate, legacy, None)  # a controller from before seals: accepted
    assert _accept(gate, _sealed(_manifest(2), key_a[0], 7), _ref(_manifest(1)))
    with pytest.raises(Rejected, match="unsealed"):
        gate.check(dataclasses.replace(_sealed(_manifest(3), key_a[0], 8), seal=None),
                   _ref(_manifest(2)), now=NOW)
    assert gate.refusals["unsealed"] == 1


def test_a_damaged_trust_file_stops_the_agent_instead_of_forgetting(tmp_path: Path) -> None:
    (tmp_path / "trust.json").write_text('{"highest_counter": "many"')
    with pytest.raises(TrustStateError, match="damaged"):
        TrustStore(tmp_path)
    (tmp_path / "trust.json").write_text(json.dumps({"highest_counter": -1}))
    with pytest.raises(TrustStateError, match="integers >= 0"):
        TrustStore(tmp_path)


def _key_update(signers: list[bytes], sequence: int, trusted: list[tuple],
                retired: list[str] = ()) -> KeyUpdateMessage:
    update = {"sequence": sequence, "issued_at": NOW,
              "trusted": {k[2]: k[1].decode() for k in trusted}, "retired": list(retired)}
    message = KeyUpdateMessage(update, sign_key_update(signers, update))
    return decode(encode(message), KeyUpdateMessage)


def test_a_full_rotation_by_key_updates(tmp_path: Path, key_a: tuple) -> None:
    gate = _gate(tmp_path, key_a)
    key_b = generate_keypair()
    v1 = _manifest(1)
    # B is added by an update signed by A (the key the device trusts)
    add_b = _key_update([key_a[0]], 1, [key_a, key_b])
    update = gate.check_key_update(add_b)
    assert update is not None
    gate.apply_key_update(update)
    assert set(gate.trusted_keys) == {key_a[2], key_b[2]}
    assert gate.check_key_update(add_b) is None  # the retained copy again: nothing to do
    assert _accept(gate, _sealed(v1, key_b[0], 1), None)  # B signs now
    # A is retired by an update signed by B and A
    retire_a = _key_update([key_b[0], key_a[0]], 2, [key_b], retired=[key_a[2]])
    update = gate.check_key_update(retire_a)
    assert update is not None
    gate.apply_key_update(update)
    assert set(gate.trusted_keys) == {key_b[2]}
    with pytest.raises(Rejected, match="does not trust"):
        gate.check(_sealed(_manifest(2), key_a[0], 5), _ref(v1), now=NOW)
    # A cannot bring itself back, and the older update cannot be replayed
    with pytest.raises(Rejected, match="does not trust"):
        gate.check_key_update(_key_update([key_a[0]], 3, [key_a, key_b]))
    with pytest.raises(Rejected, match="does not trust"):
        gate.check_key_update(add_b)  # signed by A only
    with pytest.raises(Rejected, match="older than 2"):  # an older one B signed
        gate.check_key_update(_key_update([key_b[0]], 1, [key_a, key_b]))
    assert gate.refusals["key_update"] == 3
    # kept across a restart, although agent.toml still lists A
    again = _gate(tmp_path, key_a)
    assert set(again.trusted_keys) == {key_b[2]}
    assert again.state.key_sequence == 2


def test_a_device_that_missed_updates_follows_the_latest_one(tmp_path: Path,
                                                             key_a: tuple) -> None:
    gate = _gate(tmp_path, key_a)
    key_b = generate_keypair()
    # it missed "add B" (sequence 1); the retained message is the retirement, signed by B and A
    update = gate.check_key_update(_key_update([key_b[0], key_a[0]], 2, [key_b],
                                               retired=[key_a[2]]))
    assert update is not None and update.signed_by == (key_a[2],)
    gate.apply_key_update(update)
    assert set(gate.trusted_keys) == {key_b[2]}


def test_bad_key_updates_are_refused(tmp_path: Path, key_a: tuple) -> None:
    gate = _gate(tmp_path, key_a)
    key_b = generate_keypair()
    message = _key_update([key_a[0]], 1, [key_b])
    message.update["trusted"][key_b[2]] = key_a[1].decode()  # tampered after signing
    with pytest.raises(Rejected, match="does not match"):
        gate.check_key_update(message)
    mislabelled = {"sequence": 1, "issued_at": NOW, "trusted": {key_b[2]: key_a[1].decode()},
                   "retired": []}
    with pytest.raises(Rejected, match="under the id"):
        gate.check_key_update(KeyUpdateMessage(mislabelled,
                                               sign_key_update([key_a[0]], mislabelled)))
    lonely = _key_update([key_a[0]], 1, [key_b], retired=[key_a[2], key_b[2]])
    with pytest.raises(Rejected):
        gate.check_key_update(lonely)
    assert gate.state.key_sequence == 0
