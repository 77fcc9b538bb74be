from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from controller.security.signing import generate_keypair, sign_manifest, sign_rollback_order
from edgewise_wire import envelope as trust
from edgewise_wire.envelope import (
    BadSignature,
    DowngradeRefused,
    ExpiredManifest,
    MalformedEnvelope,
    MisconfiguredTrustedKey,
    NotForThisDevice,
    TrustError,
    UnknownSigningKey,
    UnsignedManifest,
    WrongDeviceClass,
    canonical_bytes,
    key_id_of,
    trusted_keys_from,
    verify_envelope,
    verify_rollback_order,
)
from edgewise_wire.errors import SchemaError
from edgewise_wire.manifest import ArtifactRef, Manifest, SmokeTest, TensorSpec

NOW = 1_750_000_000.0
LATER = NOW + 3600


def _manifest(version: int = 4) -> dict[str, Any]:
    return Manifest(
        model="churn", version=version, format="onnx", task="classification",
        inputs=(TensorSpec("x", "float32", (None, 2)),),
        outputs=(TensorSpec("label", "int64", (None,)),),
        label_output="label", score_output=None, class_labels=(0, 1),
        feature_names=("tenure", "spend"),
        artifact=ArtifactRef.describe(b"\x00model-bytes" * 200, chunk_size=1024),
        smoke_tests=(SmokeTest([[1.0, 0.5]], [1]),), smoke_tolerance=1e-4,
        source={"note": "Übersetzung — non-ASCII survives"},
    ).to_dict()


@pytest.fixture(scope="module")
def key() -> tuple[bytes, bytes, str]:
    return generate_keypair()


@pytest.fixture(scope="module")
def other_key() -> tuple[bytes, bytes, str]:
    return generate_keypair()


def _trusted(*keys: tuple[bytes, bytes, str]) -> dict[str, bytes]:
    return {kid: pub for _, pub, kid in keys}


def _verify(envelope: Any, trusted: dict[str, bytes], **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"now": NOW, "device_class": "pi4", "running_version": 3}
    args.update(kw)
    return verify_envelope(envelope, trusted, **args)


def test_keypair_and_key_id(key: tuple[bytes, bytes, str]) -> None:
    private_pem, public_pem, kid = key
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert len(kid) == 16 and int(kid, 16) >= 0
    assert key_id_of(public_pem) == kid
    assert trusted_keys_from([public_pem]) == {kid: public_pem}


def test_canonical_bytes_are_sorted_compact_utf8() -> None:
    assert canonical_bytes({"b": 1, "a": "ü"}) == '{"a":"ü","b":1}'.encode()
    with pytest.raises(ValueError):
        canonical_bytes({"x": float("nan")})


def test_valid_envelope_verifies(key: tuple[bytes, bytes, str]) -> None:
    manifest = _manifest()
    env = sign_manifest(manifest, key[0], expires_at=LATER, device_class="pi4")
    assert set(env) == {"manifest", "expires_at", "device_class", "signature"}
    assert env["signature"]["alg"] == "ed25519" and env["signature"]["key_id"] == key[2]
    # it travels as JSON
    got = _verify(json.loads(json.dumps(env)), _trusted(key))
    assert got == manifest
    assert Manifest.from_dict(got).version == 4


def test_any_device_class_when_unrestricted(key: tuple[bytes, bytes, str]) -> None:
    env = sign_manifest(_manifest(), key[0], expires_at=LATER)
    assert _verify(env, _trusted(key), device_class=None)["version"] == 4
    assert _verify(env, _trusted(key), device_class="pi5")["version"] == 4


def test_first_install_has_no_running_version(key: tuple[bytes, bytes, str]) -> None:
    env = sign_manifest(_manifest(version=1), key[0], expires_at=LATER)
    assert _verify(env, _trusted(key), running_version=None)["version"] == 1


def _tamper_manifest(env: dict[str, Any]) -> None:
    env["manifest"]["artifact"]["sha256"] = "f" * 64


def _tamper_version(env: dict[str, Any]) -> None:
    env["manifest"]["version"] = 9


def _tamper_smoke(env: dict[str, Any]) -> None:
    env["manifest"]["smoke_tests"][0]["expected_labels"] = [0]


def _tamper_expiry(env: dict[str, Any]) -> None:
    env["expires_at"] = env["expires_at"] + 86400 * 365


def _tamper_class(env: dict[str, Any]) -> None:
    env["device_class"] = None


def _tamper_sig(env: dict[str, Any]) -> None:
    env["signature"]["sig"] = env["signature"]["sig"][:-4] + "AAA="


def _tamper_sig_b64(env: dict[str, Any]) -> None:
    env["signature"]["sig"] = "not base64!"


@pytest.mark.parametrize("tamper", [_tamper_manifest, _tamper_version, _tamper_smoke,
                                    _tamper_expiry, _tamper_class, _tamper_sig, _tamper_sig_b64])
def test_tampering_is_a_bad_signature(key: tuple[bytes, bytes, str], tamper: Any) -> None:
    env = sign_manifest(_manifest(), key[0], expires_at=LATER, device_class="pi4")
    bad = copy.deepcopy(env)
    tamper(bad)
    with pytest.raises(BadSignature):
        _verify(bad, _trusted(key))


def test_key_id_swapped_to_another_trusted_key_fails(key: tuple[bytes, bytes, str],
                                                     other_key: tuple[bytes, bytes, str]) -> None:
    env = sign_manifest(_manifest(), key[0], expires_at=LATER)
    env["signature"]["key_id"] = other_key[2]
    with pytest.raises(BadSignature):
        _verify(env, _trusted(key, other_key))


def test_unsigned(key: tuple[bytes, bytes, str]) -> None:
    with pytest.raises(UnsignedManifest):
        _verify(_manifest(), _trusted(key))  # a bare manifest
    env = sign_manifest(_manifest(), key[0], expires_at=LATER)
    del env["signature"]
    with pytest.raises(UnsignedManifest):
        _verify(env, _trusted(key))
    env["signature"] = None
    with pytest.raises(UnsignedManifest):
        _verify(env, _trusted(key))


def test_unknown_key_is_named(key: tuple[bytes, bytes, str],
                              other_key: tuple[bytes, bytes, str]) -> None:
    env = sign_manifest(_manifest(), key[0], expires_at=LATER)
    with pytest.raises(UnknownSigningKey) as info:
        _verify(env, _trusted(other_key))
    assert info.value.key_id == key[2]
    assert key[2] in str(info.value) and other_key[2] in str(info.value)


def test_expired_says_when(key: tuple[bytes, bytes, str]) -> None:
    env = sign_manifest(_manifest(), key[0], expires_at=NOW - 60)
    with pytest.raises(ExpiredManifest) as info:
        _verify(env, _trusted(key))
    assert info.value.expires_at == NOW - 60
    assert "2025-06-15T15:05:40+00:00" in str(info.value) and "60 s ago" in str(info.value)
    with pytest.raises(ExpiredManifest):
        _verify(sign_manifest(_manifest(), key[0], expires_at=NOW), _trusted(key))


def test_wrong_device_class_says_which(key: tuple[bytes, bytes, str]) -> None:
    env = sign_manifest(_manifest(), key[0], expires_at=LATER, device_class="pi5")
    with pytest.raises(WrongDeviceClass) as info:
        _verify(env, _trusted(key), device_class="pi4")
    assert "'pi5'" in str(info.value) and "'pi4'" in str(info.value)
    with pytest.raises(WrongDeviceClass):
        _verify(env, _trusted(key), device_class=None)


@pytest.mark.parametrize("running", [4, 5])
def test_equal_or_lower_version_is_a_downgrade(key: tuple[bytes, bytes, str], running: int) -> None:
    env = sign_manifest(_manifest(version=4), key[0], expires_at=LATER)
    with pytest.raises(DowngradeRefused):
        _verify(env, _trusted(key), running_version=running)


def _order(key: tuple[bytes, bytes, str], **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"model": "churn", "to_version": 4, "issued_at": NOW - 10,
                            "expires_at": LATER, "device_id": "pi-17"}
    args.update(kw)
    return sign_rollback_order(key[0], **args)


def test_downgrade_with_a_signed_rollback_order(key: tuple[bytes, bytes, str]) -> None:
    order = verify_rollback_order(json.loads(json.dumps(_order(key))), _trusted(key), now=NOW,
                                  device_id="pi-17")
    assert (order.model, order.to_version, order.device_id, order.key_id) == (
        "churn", 4, "pi-17", key[2])
    env = sign_manifest(_manifest(version=4), key[0], expires_at=LATER)
    assert _verify(env, _trusted(key), running_version=5, rollback_order=order)["version"] == 4


def test_rollback_order_must_name_this_version(key: tuple[bytes, bytes, str]) -> None:
    order = verify_rollback_order(_order(key, to_version=2), _trusted(key), now=NOW,
                                  device_id="pi-17")
    env = sign_manifest(_manifest(version=4), key[0], expires_at=LATER)
    with pytest.raises(DowngradeRefused, match="churn:2"):
        _verify(env, _trusted(key), running_version=5, rollback_order=order)


def test_rollback_order_checks(key: tuple[bytes, bytes, str],
                               other_key: tuple[bytes, bytes, str]) -> None:
    trusted = _trusted(key)
    with pytest.raises(NotForThisDevice):
        verify_rollback_order(_order(key), trusted, now=NOW, device_id="pi-18")
    with pytest.raises(ExpiredManifest):
        verify_rollback_order(_order(key), trusted, now=LATER + 1, device_id="pi-17")
    with pytest.raises(UnknownSigningKey):
        verify_rollback_order(_order(other_key), trusted, now=NOW, device_id="pi-17")
    tampered = _order(key)
    tampered["order"]["to_version"] = 1
    with pytest.raises(BadSignature):
        verify_rollback_order(tampered, trusted, now=NOW, device_id="pi-17")
    unsigned = _order(key)
    del unsigned["signature"]
    with pytest.raises(UnsignedManifest):
        verify_rollback_order(unsigned, trusted, now=NOW, device_id="pi-17")


def test_rollback_order_by_selector(key: tuple[bytes, bytes, str]) -> None:
    env = _order(key, device_id=None, selector="site=berlin")
    with pytest.raises(NotForThisDevice):
        verify_rollback_order(env, _trusted(key), now=NOW, device_id="pi-17")
    with pytest.raises(NotForThisDevice):
        verify_rollback_order(env, _trusted(key), now=NOW, device_id="pi-17",
                              selector_matches=lambda s: False)
    order = verify_rollback_order(env, _trusted(key), now=NOW, device_id="pi-17",
                                  selector_matches=lambda s: s == "site=berlin")
    assert order.selector == "site=berlin"


def test_signatures_do_not_cross_document_types(key: tuple[bytes, bytes, str]) -> None:
    """A rollback order's signature cannot be passed off as a manifest's, or back."""
    order = _order(key)
    forged = {"manifest": order["order"], "expires_at": LATER, "device_class": None,
              "signature": order["signature"]}
    with pytest.raises(BadSignature):
        _verify(forged, _trusted(key), running_version=None)
    env = sign_manifest(_manifest(), key[0], expires_at=LATER)
    with pytest.raises(BadSignature):
        verify_rollback_order({"order": env["manifest"], "signature": env["signature"]},
                              _trusted(key), now=NOW, device_id="pi-17")


def test_sign_rollback_order_refuses_ambiguous_targets(key: tuple[bytes, bytes, str]) -> None:
    with pytest.raises(ValueError):
        _order(key, selector="site=berlin")
    with pytest.raises(ValueError):
        _order(key, device_id=None)
    with pytest.raises(ValueError):
        _order(key, expires_at=NOW - 20)


def test_key_rotation(key: tuple[bytes, bytes, str], other_key: tuple[bytes, bytes, str]) -> None:
    old, new = key, other_key
    by_old = sign_manifest(_manifest(), old[0], expires_at=LATER)
    by_new = sign_manifest(_manifest(), new[0], expires_at=LATER)
    both = _trusted(old, new)
    assert _verify(by_old, both) == _verify(by_new, both)
    only_new = _trusted(new)
    assert _verify(by_new, only_new)["version"] == 4
    with pytest.raises(UnknownSigningKey):
        _verify(by_old, only_new)


def test_mislabelled_trusted_key_is_refused(key: tuple[bytes, bytes, str],
                                            other_key: tuple[bytes, bytes, str]) -> None:
    env = sign_manifest(_manifest(), key[0], expires_at=LATER)
    with pytest.raises(MisconfiguredTrustedKey):
        _verify(env, {key[2]: other_key[1]})
    with pytest.raises(MisconfiguredTrustedKey):
        _verify(env, {key[2]: b"not a pem"})


@pytest.mark.parametrize("bad", [
    "a string",
    {"manifest": [], "expires_at": LATER, "signature": {"key_id": "k", "alg": "ed25519", "sig": ""}},
    {"manifest": {}, "signature": {"key_id": "k", "alg": "ed25519", "sig": ""}},
    {"manifest": {}, "expires_at": True, "signature": {"key_id": "k", "alg": "ed25519", "sig": ""}},
    {"manifest": {}, "expires_at": LATER, "signature": {"key_id": "k", "alg": "rsa", "sig": ""}},
    {"manifest": {}, "expires_at": LATER, "signature": "sig"},
    {"manifest": {}, "expires_at": LATER, "device_class": 4,
     "signature": {"key_id": "k", "alg": "ed25519", "sig": ""}},
])
def test_malformed_envelopes(key: tuple[bytes, bytes, str], bad: Any) -> None:
    with pytest.raises(MalformedEnvelope):
        _verify(bad, _trusted(key))


def test_every_refusal_is_a_trust_error() -> None:
    for name in ("UnsignedManifest", "UnknownSigningKey", "BadSignature", "ExpiredManifest",
                 "WrongDeviceClass", "DowngradeRefused", "MalformedEnvelope", "NotForThisDevice",
                 "MisconfiguredTrustedKey"):
        assert issubclass(getattr(trust, name), TrustError)


def test_returned_manifest_is_a_copy(key: tuple[bytes, bytes, str]) -> None:
    env = sign_manifest(_manifest(), key[0], expires_at=LATER)
    got = _verify(env, _trusted(key))
    got["version"] = 99
    assert env["manifest"]["version"] == 4


def test_misconfigured_trusted_key_says_what_it_is(key: tuple[bytes, bytes, str]) -> None:
    """An operator who pastes the private key, or another kind of key, is told which it is."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    with pytest.raises(MisconfiguredTrustedKey, match="private key"):
        key_id_of(key[0])
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(MisconfiguredTrustedKey, match=r"EC \(P-256\) public key"):
        trusted_keys_from([p256])


# -- device class: the class a version is built for, signed ------------------------------------


@pytest.mark.parametrize(("signed_for", "built_for", "device_class", "refused_for"), [
    (None, None, "pi4", None),            # any class
    ("pi4", None, "pi4", None),
    (None, "pi4", "pi4", None),
    ("pi4", "pi4", "pi4", None),
    ("camera-v2", None, "pi4", "camera-v2"),   # the envelope names another class
    (None, "arm64", "pi4", "arm64"),           # the manifest is built for another
    ("pi4", "arm64", "pi4", "arm64"),          # one of the two names another: refused
    ("pi4", None, None, "pi4"),                # a device with no class takes class-free ones only
    ("Pi4", None, "pi4", "Pi4"),               # names are exact, not case-folded
])
def test_class_target_rule(signed_for: str | None, built_for: str | None,
                           device_class: str | None, refused_for: str | None) -> None:
    if refused_for is None:
        trust.check_class_target(signed_for, built_for, device_class)
        return
    with pytest.raises(WrongDeviceClass) as caught:
        trust.check_class_target(signed_for, built_for, device_class)
    assert (caught.value.signed_for, caught.value.device_class) == (refused_for, device_class)
    assert f"device class {refused_for!r}" in str(caught.value)


def test_a_manifest_class_that_is_no_string_is_malformed() -> None:
    with pytest.raises(MalformedEnvelope, match="device_class"):
        trust.check_class_target(None, ["pi4"], "pi4")


def test_a_manifest_built_for_another_class_is_refused_inside_an_any_class_envelope(
        key: tuple[bytes, bytes, str]) -> None:
    manifest = {**_manifest(), "device_class": "camera-v2"}
    env = sign_manifest(manifest, key[0], expires_at=LATER)  # envelope: any class
    with pytest.raises(WrongDeviceClass, match="'camera-v2'"):
        _verify(env, _trusted(key), device_class="pi4")
    assert _verify(env, _trusted(key), device_class="camera-v2")["device_class"] == "camera-v2"
    # the class cannot be taken out: it is inside the signed manifest
    stripped = copy.deepcopy(env)
    del stripped["manifest"]["device_class"]
    with pytest.raises(BadSignature):
        _verify(stripped, _trusted(key), device_class="pi4")


def test_an_envelope_class_cannot_be_changed(key: tuple[bytes, bytes, str]) -> None:
    env = sign_manifest(_manifest(), key[0], expires_at=LATER, device_class="camera-v2")
    for forged in ("pi4", None):
        with pytest.raises(BadSignature):
            _verify({**env, "device_class": forged}, _trusted(key), device_class="pi4")


def test_manifest_device_class_round_trip_and_rule() -> None:
    plain = _manifest()
    assert "device_class" not in plain  # manifests without one keep their exact signed form
    assert Manifest.from_dict(plain).device_class is None
    built = Manifest.from_dict({**plain, "device_class": "camera-v2"})
    assert built.device_class == "camera-v2"
    assert built.to_dict()["device_class"] == "camera-v2"
    assert Manifest.from_dict(built.to_dict()) == built
    for bad in ("", "*", "has space", "-lead", "a/b", "x" * 65):
        with pytest.raises(SchemaError, match="device_class"):
            Manifest.from_dict({**plain, "device_class": bad})
