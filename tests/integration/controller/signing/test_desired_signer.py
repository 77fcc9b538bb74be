"""The controller's side of signed updates, without a broker: what ``DesiredSigner`` builds is
checked with the device's own verification code (``edgewise_wire.envelope``), keys are real Ed25519
keys in a temporary ``SigningKeys`` directory."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from controller.fleet.versions import ModelVersion
from controller.security.desired_signer import (
    ActiveSigningKey,
    DesiredSigner,
    ensure_signing_key,
    rollback_target,
)
from controller.security.signing import generate_keypair
from controller.security.signing_keys import SigningKeys
from edgewise_wire import Desired, Manifest, ModelRef, ProbationPolicy, decode, encode
from edgewise_wire.envelope import (
    DowngradeRefused,
    ExpiredManifest,
    NotForThisDevice,
    UnknownSigningKey,
    WrongDeviceClass,
    trusted_keys_from,
    verify_envelope,
    verify_rollback_order,
)
from tests.integration.controller.store.conftest import build_manifest

NOW = 1_800_000_000.0
TTL = 3600.0


def manifest(version: int, model: str = "iris") -> Manifest:
    return dataclasses.replace(build_manifest(bytes([version]) * 2000, model=model),
                               version=version)


@pytest.fixture
def keypair() -> tuple[bytes, dict[str, bytes]]:
    private, public, _ = generate_keypair()
    return private, trusted_keys_from([public])


@pytest.fixture
def signer(keypair: tuple[bytes, dict[str, bytes]]) -> DesiredSigner:
    return DesiredSigner(lambda: keypair[0], ttl_s=TTL)


def device_accepts(desired: Desired, trusted: dict[str, bytes], device_id: str,
                   running: int | None, now: float = NOW) -> dict:
    """What an agent in enforce mode does with it: verify the order (if any), then the
    envelope against the running version of the same model."""
    order = None
    if desired.rollback_order is not None:
        order = verify_rollback_order(desired.rollback_order, trusted, now=now,
                                      device_id=device_id)
    return verify_envelope(desired.envelope, trusted, now=now, device_class="generic",
                           running_version=running, rollback_order=order)


def test_envelope_verifies_with_the_device_code_and_carries_the_manifest(
        signer: DesiredSigner, keypair: tuple[bytes, dict[str, bytes]]) -> None:
    m = manifest(2)
    desired = signer.desired("dep-1", m, "dev-1", ModelRef("iris", 1, "a" * 64), now=NOW)
    assert desired.envelope is not None and desired.rollback_order is None
    assert device_accepts(desired, keypair[1], "dev-1", running=1) == m.to_dict()
    # on the wire: the manifest travels inside "signed" only, and decodes back
    wire = decode(encode(desired), Desired)
    assert wire.manifest == m and wire.envelope == desired.envelope
    payload = json.loads(encode(desired))
    assert payload["signed"] == desired.envelope and not isinstance(payload["manifest"], dict)


def test_the_envelope_is_signed_for_the_class_the_version_is_built_for(
        signer: DesiredSigner, keypair: tuple[bytes, dict[str, bytes]]) -> None:
    any_class = signer.desired("dep-1", manifest(2), "dev-1", None, now=NOW)
    assert any_class.envelope is not None and any_class.envelope["device_class"] is None
    camera = dataclasses.replace(manifest(3), device_class="camera-v2")
    for desired in (signer.desired("dep-2", camera, "dev-1", None, now=NOW),
                    signer.for_devices("dep-2", camera, {"dev-2": None}, now=NOW)[0][1]):
        assert desired.envelope is not None and desired.envelope["device_class"] == "camera-v2"
        assert verify_envelope(desired.envelope, keypair[1], now=NOW, device_class="camera-v2",
                               running_version=None) == camera.to_dict()
        with pytest.raises(WrongDeviceClass, match="'camera-v2', this device is 'generic'"):
            device_accepts(desired, keypair[1], "dev-1", running=None)
    # experiments sign their candidate through the same method
    assert signer.envelope(camera, NOW)["device_class"] == "camera-v2"


def test_expiry_is_now_plus_the_ttl(signer: DesiredSigner,
                                    keypair: tuple[bytes, dict[str, bytes]]) -> None:
    desired = signer.desired("dep-1", manifest(1), "dev-1", None, now=NOW)
    assert desired.envelope is not None
    assert desired.envelope["expires_at"] == NOW + TTL and desired.ts == NOW
    device_accepts(desired, keypair[1], "dev-1", None, now=NOW + TTL - 1)
    with pytest.raises(ExpiredManifest):
        device_accepts(desired, keypair[1], "dev-1", None, now=NOW + TTL)


@pytest.mark.parametrize(("target", "running", "pending", "revert_of", "expected"), [
    (2, None, None, None, None),  # first model
    (2, ("iris", 1), None, None, None),  # upgrade
    (2, ("other", 9), None, None, None),  # another model: no version order between them
    (2, ("iris", 2), None, None, ("iris", 2)),  # the same version again
    (1, ("iris", 2), None, None, ("iris", 1)),  # downgrade
    (2, ("iris", 1), ("iris", 3), None, ("iris", 2)),  # it may reach v3 before this arrives
    (2, ("iris", 1), ("iris", 2), None, None),  # installing this very version: no downgrade
    (2, ("iris", 1), None, "iris", ("iris", 2)),  # a revert: always
    (None, ("iris", 2), None, None, ("iris", 0)),  # no model: named by the running model
    (None, None, None, None, None),  # no model on a device that runs none
    (None, None, None, "iris", ("iris", 0)),  # revert to nothing: it may run the new one
])
def test_rollback_order_exactly_when_needed(
        signer: DesiredSigner, keypair: tuple[bytes, dict[str, bytes]], target: int | None,
        running: tuple[str, int] | None, pending: tuple[str, int] | None,
        revert_of: str | None, expected: tuple[str, int] | None) -> None:
    m = manifest(target) if target is not None else None
    ref = ModelVersion(*running) if running else None
    pend = ModelVersion(*pending) if pending else None
    assert rollback_target(m, ref, pending=pend, revert_of=revert_of) == expected
    desired = signer.desired("dep-1", m, "dev-7", ref, now=NOW, pending=pend,
                             revert_of=revert_of)
    if expected is None:
        assert desired.rollback_order is None
        return
    order = verify_rollback_order(desired.rollback_order, keypair[1], now=NOW,
                                  device_id="dev-7")
    assert (order.model, order.to_version, order.device_id) == (*expected, "dev-7")
    assert order.expires_at == NOW + TTL
    with pytest.raises(NotForThisDevice):  # addressed to one device only
        verify_rollback_order(desired.rollback_order, keypair[1], now=NOW, device_id="dev-8")


def test_a_downgrade_passes_the_device_check_only_with_its_order(
        signer: DesiredSigner, keypair: tuple[bytes, dict[str, bytes]]) -> None:
    desired = signer.desired("dep-1", manifest(1), "dev-1", ModelVersion("iris", 2), now=NOW)
    assert device_accepts(desired, keypair[1], "dev-1", running=2)["version"] == 1
    stripped = dataclasses.replace(desired, rollback_order=None)
    with pytest.raises(DowngradeRefused):
        device_accepts(stripped, keypair[1], "dev-1", running=2)


def test_one_envelope_and_one_message_for_devices_without_an_order(
        signer: DesiredSigner) -> None:
    running = {"a": ModelVersion("iris", 1), "b": None, "c": ModelVersion("iris", 3)}
    out = dict(signer.for_devices("dep-1", manifest(2), running, now=NOW,
                                  probation=ProbationPolicy(30.0)))
    assert out["a"] is out["b"]  # the bridge encodes a shared message once
    assert out["c"].rollback_order is not None and out["c"].envelope is out["a"].envelope
    assert all(d.probation == ProbationPolicy(30.0) for d in out.values())
    assert decode(encode(out["c"]), Desired).probation == ProbationPolicy(30.0)


def test_rotation_takes_effect_without_a_restart(tmp_path: Path) -> None:
    keys = SigningKeys.for_data_dir(tmp_path)
    source = ensure_signing_key(keys)
    first = keys.active()
    assert first is not None
    signer = DesiredSigner(source, ttl_s=TTL)
    before = signer.desired("dep-1", manifest(1), "dev-1", None, now=NOW)
    assert before.envelope is not None
    assert before.envelope["signature"]["key_id"] == first.key_id
    new, old = keys.rotate()
    assert old is not None and old.key_id == first.key_id
    after = signer.desired("dep-2", manifest(2), "dev-1", None, now=NOW)
    assert after.envelope is not None
    assert after.envelope["signature"]["key_id"] == new.key_id
    # a device trusting both (the bundle after a rotation) takes both; one with the old only
    # names the key it does not know
    both = trusted_keys_from(k.public_pem for k in keys.trusted())
    device_accepts(before, both, "dev-1", None)
    device_accepts(after, both, "dev-1", None)
    with pytest.raises(UnknownSigningKey, match=new.key_id):
        device_accepts(after, trusted_keys_from([first.public_pem]), "dev-1", None)


def test_the_active_key_is_read_again_only_when_keys_json_changes(tmp_path: Path) -> None:
    class Counting(SigningKeys):
        reads = 0

        def active_private_pem(self) -> bytes:
            Counting.reads += 1
            return super().active_private_pem()

    keys = Counting(tmp_path / "signing-keys")
    keys.create()
    source = ActiveSigningKey(keys)
    pem = source()
    assert source() == pem and source() == pem and Counting.reads == 1
    keys.rotate()
    assert source() != pem and Counting.reads == 2


def test_ensure_creates_a_key_once(tmp_path: Path) -> None:
    keys = SigningKeys.for_data_dir(tmp_path)
    assert keys.active() is None
    ensure_signing_key(keys)
    created = keys.active()
    ensure_signing_key(keys)
    assert created is not None and [k.key_id for k in keys.all()] == [created.key_id]


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DesiredSigner(lambda: b"", ttl_s=0)
