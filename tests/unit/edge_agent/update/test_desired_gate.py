"""The checks a device makes on a desired state before it does anything (edge_agent.desired_gate).

Pure: real Ed25519 keys and signatures, no broker. Each refusal must name its reason in words.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from controller.security.signing import generate_keypair, sign_manifest, sign_rollback_order
from edge_agent.desired_gate import DesiredGate, Rejected, TrustedKeyError, load_trusted_keys
from edgewise_wire import Desired, ModelRef, decode, encode
from edgewise_wire.manifest import ArtifactRef, Manifest, SmokeTest, TensorSpec

NOW = 1_750_000_000.0
DEVICE = "pi-7"


def _manifest(version: int, payload: bytes = b"model", model: str = "iris") -> Manifest:
    return Manifest(
        model=model, version=version, format="onnx", task="classification",
        inputs=(TensorSpec("x", "float32", (None, 2)),),
        outputs=(TensorSpec("label", "int64", (None,)),),
        label_output="label", score_output=None, class_labels=(0, 1),
        feature_names=("a", "b"),
        artifact=ArtifactRef.describe(payload * 300 + bytes([version]), chunk_size=1024),
        smoke_tests=(SmokeTest([[1.0, 0.5]], [1]),), smoke_tolerance=1e-4)


def _ref(m: Manifest) -> ModelRef:
    return ModelRef(m.model, m.version, m.artifact.sha256)


@pytest.fixture(scope="module")
def key() -> tuple[bytes, bytes, str]:
    return generate_keypair()


@pytest.fixture
def gate(key: tuple[bytes, bytes, str]) -> DesiredGate:
    _, public, key_id = key
    return DesiredGate({key_id: public}, device_id=DEVICE, device_class="pi4",
                       max_model_bytes=None)


def _signed(m: Manifest, private: bytes, *, expires: float = NOW + 3600,
            device_class: str | None = None, order: dict | None = None) -> Desired:
    envelope = sign_manifest(m.to_dict(), private, expires_at=expires, device_class=device_class)
    desired = Desired("dep-1", m, NOW, envelope=envelope, rollback_order=order)
    return decode(encode(desired), Desired)  # as the device receives it off the wire


def _order(private: bytes, model: str, version: int, device_id: str = DEVICE) -> dict:
    return sign_rollback_order(private, model=model, to_version=version, device_id=device_id,
                               issued_at=NOW - 1, expires_at=NOW + 600)


def test_a_signed_newer_version_is_accepted(gate: DesiredGate, key: tuple) -> None:
    v1, v2 = _manifest(1), _manifest(2)
    accepted = gate.check(_signed(v2, key[0]), _ref(v1), now=NOW)
    assert accepted.manifest == v2 and not accepted.rollback


def test_an_unsigned_manifest_is_refused_when_keys_are_trusted(gate: DesiredGate) -> None:
    with pytest.raises(Rejected, match="not signed"):
        gate.check(Desired("dep", _manifest(2), NOW), None, now=NOW)


def test_a_manifest_signed_by_another_key_is_refused(gate: DesiredGate) -> None:
    stranger = generate_keypair()
    with pytest.raises(Rejected, match="does not trust"):
        gate.check(_signed(_manifest(2), stranger[0]), None, now=NOW)


def test_a_tampered_manifest_fails_its_signature(gate: DesiredGate, key: tuple) -> None:
    desired = _signed(_manifest(2), key[0])
    assert desired.envelope is not None
    desired.envelope["manifest"]["smoke_tolerance"] = 0.5  # changed after signing
    with pytest.raises(Rejected, match="signature"):
        gate.check(desired, None, now=NOW)


def test_an_expired_manifest_is_refused(gate: DesiredGate, key: tuple) -> None:
    with pytest.raises(Rejected, match="expired"):
        gate.check(_signed(_manifest(2), key[0], expires=NOW - 5), None, now=NOW)


def test_a_manifest_for_another_device_class_is_refused(gate: DesiredGate, key: tuple) -> None:
    with pytest.raises(Rejected, match="device class 'jetson'"):
        gate.check(_signed(_manifest(2), key[0], device_class="jetson"), None, now=NOW)
    assert gate.check(_signed(_manifest(2), key[0], device_class="pi4"), None, now=NOW)
    assert gate.refusals["other_class"] == 1


def test_a_version_built_for_another_class_is_refused_and_counted(
        gate: DesiredGate, key: tuple) -> None:
    # what the controller signs for a version registered with a class: the class twice
    camera = dataclasses.replace(_manifest(2), device_class="camera-v2")
    with pytest.raises(Rejected, match="refused iris:2: .*device class 'camera-v2', this "
                                       "device is 'pi4'"):
        gate.check(_signed(camera, key[0], device_class="camera-v2"), None, now=NOW)
    # an experiment's candidate (no seal) is held to the same rule
    with pytest.raises(Rejected, match="camera-v2"):
        gate.check(_signed(camera, key[0]), None, now=NOW, sealed=False)
    assert gate.refusals["other_class"] == 2
    pi4 = dataclasses.replace(_manifest(2), device_class="pi4")
    assert gate.check(_signed(pi4, key[0], device_class="pi4"), None, now=NOW).manifest == pi4
    assert gate.refusals["other_class"] == 2


@pytest.mark.parametrize("version", [1, 2], ids=["lower", "equal"])
def test_a_version_not_above_the_running_one_needs_a_rollback_order(
        gate: DesiredGate, key: tuple, version: int) -> None:
    running = _manifest(2, b"running")
    with pytest.raises(Rejected, match="rollback order"):
        gate.check(_signed(_manifest(version), key[0]), _ref(running), now=NOW)
    accepted = gate.check(_signed(_manifest(version), key[0],
                                  order=_order(key[0], "iris", version)), _ref(running), now=NOW)
    assert accepted.rollback


def test_a_rollback_order_for_another_version_or_device_does_not_allow_a_downgrade(
        gate: DesiredGate, key: tuple) -> None:
    running = _manifest(3)
    with pytest.raises(Rejected, match="rollback order is for iris:2"):
        gate.check(_signed(_manifest(1), key[0], order=_order(key[0], "iris", 2)),
                   _ref(running), now=NOW)
    with pytest.raises(Rejected, match="for device 'pi-8'"):
        gate.check(_signed(_manifest(1), key[0], order=_order(key[0], "iris", 1, "pi-8")),
                   _ref(running), now=NOW)


def test_a_rollback_order_signed_by_an_untrusted_key_is_refused(
        gate: DesiredGate, key: tuple) -> None:
    stranger = generate_keypair()
    with pytest.raises(Rejected, match="rollback order"):
        gate.check(_signed(_manifest(1), key[0], order=_order(stranger[0], "iris", 1)),
                   _ref(_manifest(3)), now=NOW)


def test_the_model_that_runs_is_not_a_downgrade(gate: DesiredGate, key: tuple) -> None:
    running = _manifest(2)
    accepted = gate.check(_signed(running, key[0]), _ref(running), now=NOW)
    assert accepted.manifest == running and not accepted.rollback


def test_another_model_name_is_not_compared_by_version(gate: DesiredGate, key: tuple) -> None:
    other = _manifest(1, model="wine")
    assert gate.check(_signed(other, key[0]), _ref(_manifest(5)), now=NOW).manifest == other


def test_unloading_needs_a_signed_order_to_version_zero(gate: DesiredGate, key: tuple) -> None:
    running = _ref(_manifest(2))
    with pytest.raises(Rejected, match="to version 0"):
        gate.check(Desired("dep", None, NOW), running, now=NOW)
    accepted = gate.check(Desired("dep", None, NOW, rollback_order=_order(key[0], "iris", 0)),
                          running, now=NOW)
    assert accepted.manifest is None and accepted.rollback
    # nothing runs: unloading changes nothing and needs no order
    assert gate.check(Desired("dep", None, NOW), None, now=NOW).manifest is None


def test_development_mode_takes_unsigned_manifests_but_still_checks_size_and_format() -> None:
    gate = DesiredGate({}, device_id=DEVICE, device_class="pi4", max_model_bytes=1000)
    assert not gate.enforcing
    small = _manifest(1, b"m")
    small = dataclasses.replace(small, artifact=ArtifactRef.describe(b"x" * 900))
    assert gate.check(Desired("dep", small, NOW), None, now=NOW).manifest == small
    with pytest.raises(Rejected, match="max_model_bytes = 1000"):
        gate.check(Desired("dep", _manifest(2), NOW), None, now=NOW)
    with pytest.raises(Rejected, match="format 'pt'"):
        gate.check(Desired("dep", dataclasses.replace(small, format="pt"), NOW), None, now=NOW)


def test_trusted_keys_load_from_pem_text_and_files(tmp_path: Path, key: tuple) -> None:
    _, public, key_id = key
    path = tmp_path / "k.pem"
    path.write_bytes(public)
    assert load_trusted_keys([public.decode()]) == {key_id: public}
    assert load_trusted_keys([str(path)]) == {key_id: public}
    with pytest.raises(TrustedKeyError, match="cannot be read"):
        load_trusted_keys([str(tmp_path / "missing.pem")])
    (tmp_path / "bad.pem").write_text("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    with pytest.raises(TrustedKeyError):
        load_trusted_keys([str(tmp_path / "bad.pem")])
