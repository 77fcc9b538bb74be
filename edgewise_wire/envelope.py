"""The signed envelope: the format of signed manifests and rollback orders, and its verification.

Part of the wire contract both sides import. The device *verifies* with
:mod:`edgewise_wire.public_keys` (PyNaCl); signing and key generation need ``cryptography`` and
live on the controller (:mod:`controller.security.signing`), which builds the signed content with
:func:`manifest_signed_content` and :func:`rollback_signed_content` from here, so the bytes that
are signed and the bytes that are checked come from one definition.

A signed manifest travels as an *envelope*::

    {
      "manifest":     {...},                 # Manifest.to_dict()
      "expires_at":   1767225600.0,          # epoch seconds; refused from then on
      "device_class": "pi4" | null,          # null: any device
      "signature":    {"key_id": "<16 hex>", "alg": "ed25519", "sig": "<base64>"}
    }

The signature covers the canonical JSON (:func:`canonical_bytes`) of
``{"type": "edgewise.manifest.v1", "manifest", "expires_at", "device_class", "key_id"}``: expiry
and device class cannot be changed (the controller signs the class the model version is built
for, its manifest's ``device_class``; a device of another class refuses it:
:func:`check_class_target`), and the ``type`` keeps a signed manifest from being replayed
as a rollback order (``"edgewise.rollback-order.v1"``) or the other way round. A rollback order
is ``{"order": {model, to_version, device_id, selector, issued_at, expires_at}, "signature"}``.

Key rotation: a device trusts several keys at once (``{key_id: public_pem}``); the envelope names
its key, so an old key keeps working until it is removed from the trusted set
(:mod:`edgewise_wire.key_update` carries additions and retirements over the air).

Replay: an envelope is signed once for the fleet and stays valid until it expires; what makes a
desired state single-use and addressed to one device is its *seal* (:mod:`edgewise_wire.seal`).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edgewise_wire import public_keys

ALG = "ed25519"
MANIFEST_TYPE = "edgewise.manifest.v1"
ROLLBACK_ORDER_TYPE = "edgewise.rollback-order.v1"
# an agent bundle's manifest is signed under its own type: a signed model manifest cannot be
# replayed as an agent bundle (and run as the device's agent), nor the other way round
AGENT_MANIFEST_TYPE = "edgewise.agent-manifest.v1"


class TrustError(Exception):
    """Base class: a manifest or order the device must not act upon."""


class MalformedEnvelope(TrustError):
    """The envelope or order is not shaped as the format says (missing fields, wrong types)."""


class UnsignedManifest(TrustError):
    """No signature at all: a bare manifest or an order without its ``signature`` block."""


class UnknownSigningKey(TrustError):
    def __init__(self, key_id: str, trusted: Iterable[str]) -> None:
        known = ", ".join(sorted(trusted)) or "none"
        super().__init__(f"signed by key {key_id!r}, which this device does not trust "
                         f"(trusted: {known})")
        self.key_id = key_id


class MisconfiguredTrustedKey(TrustError):
    """The trusted-key map lists a key under an id that is not its own, or a non-Ed25519 key."""


class BadSignature(TrustError):
    """The signature does not match the signed content: tampered, truncated or wrong key."""


class ExpiredManifest(TrustError):
    """Past its ``expires_at`` (raised for expired rollback orders too)."""

    def __init__(self, what: str, expires_at: float, now: float) -> None:
        super().__init__(f"{what} expired at {_iso(expires_at)} ({now - expires_at:.0f} s ago; "
                         f"now is {_iso(now)})")
        self.expires_at = expires_at
        self.now = now


class WrongDeviceClass(TrustError):
    def __init__(self, signed_for: str, device_class: str | None) -> None:
        super().__init__(f"manifest is signed for device class {signed_for!r}, "
                         f"this device is {device_class!r}")
        self.signed_for = signed_for
        self.device_class = device_class


class DowngradeRefused(TrustError):
    """A version not above the running one, without a signed rollback order naming it."""


class NotForThisDevice(TrustError):
    """A rollback order addressed to another device (id or selector)."""


@dataclass(frozen=True)
class RollbackOrder:
    """A verified rollback order: only :func:`verify_rollback_order` should build one."""

    model: str
    to_version: int
    issued_at: float
    expires_at: float
    device_id: str | None
    selector: str | None
    key_id: str


# ---------------------------------------------------------------------------------------- keys


def canonical_bytes(obj: Any) -> bytes:
    """The bytes that get signed: sorted keys, no spaces, UTF-8, no NaN or infinity."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def key_id_of(public_pem: bytes) -> str:
    """First 16 hex digits of the sha256 of the raw 32-byte public key."""
    return key_id_of_raw(_load_public(public_pem))


def key_id_of_raw(raw_public: bytes) -> str:
    """The key id of a raw 32-byte Ed25519 public key."""
    return hashlib.sha256(raw_public).hexdigest()[:16]




def trusted_keys_from(public_pems: Iterable[bytes]) -> dict[str, bytes]:
    """The ``{key_id: public_pem}`` map :func:`verify_envelope` takes, keyed correctly."""
    return {key_id_of(pem): pem for pem in public_pems}


def _load_public(public_pem: bytes) -> bytes:
    """The raw 32-byte key of an Ed25519 public PEM; anything else is a misconfigured key."""
    try:
        return public_keys.public_key_from_pem(public_pem)
    except (TypeError, ValueError) as exc:
        # the message says what the PEM holds instead (a private key, an RSA key, no PEM, ...)
        raise MisconfiguredTrustedKey(f"trusted key: {exc}") from None






def check_signature(what: str, doc: Mapping[str, Any], signed: dict[str, Any],
                     trusted_keys: Mapping[str, bytes]) -> str:
    """Verify ``doc["signature"]`` over ``signed`` plus its key id; returns the key id."""
    block = doc.get("signature")
    if block is None:
        raise UnsignedManifest(f"{what} carries no signature")
    if not isinstance(block, dict):
        raise MalformedEnvelope(f"{what}: 'signature' must be an object")
    key_id, alg, sig_b64 = block.get("key_id"), block.get("alg"), block.get("sig")
    if not (isinstance(key_id, str) and isinstance(alg, str) and isinstance(sig_b64, str)):
        raise MalformedEnvelope(f"{what}: signature needs string 'key_id', 'alg' and 'sig'")
    if alg != ALG:
        raise MalformedEnvelope(f"{what}: signature algorithm {alg!r} is not {ALG!r}")
    if key_id not in trusted_keys:
        raise UnknownSigningKey(key_id, trusted_keys)
    public = _load_public(trusted_keys[key_id])
    if key_id_of_raw(public) != key_id:
        raise MisconfiguredTrustedKey(f"the key trusted as {key_id!r} has key id "
                                      f"{key_id_of_raw(public)!r}; build the map with trusted_keys_from()")
    try:
        sig = base64.b64decode(sig_b64, validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature(f"{what}: signature is not valid base64") from None
    try:
        payload = canonical_bytes({**signed, "key_id": key_id})
    except (TypeError, ValueError) as exc:
        raise MalformedEnvelope(f"{what} cannot be put in canonical form: {exc}") from None
    try:
        valid = public_keys.verify(public, sig, payload)
    except public_keys.MalformedSignature as exc:
        raise BadSignature(f"{what}: {exc}") from None
    if not valid:
        raise BadSignature(f"{what}: signature by key {key_id!r} does not match the content "
                           "(tampered, or signed over different fields)")
    return key_id


def check_class_target(signed_for: str | None, built_for: Any, device_class: str | None) -> None:
    """Raise :class:`WrongDeviceClass` unless a device of ``device_class`` is targeted.

    ``signed_for``: the envelope's ``device_class``, covered by its signature; ``built_for``:
    the manifest's own ``device_class`` (the model version's, inside the signed manifest).
    Each is either absent (None: any device class) or must be exactly this device's class: a
    validly signed version built for another class (an arm64 build, a camera-v2 model) is
    not taken, whoever publishes it to this device."""
    if built_for is not None and not isinstance(built_for, str):
        raise MalformedEnvelope("manifest: 'device_class' must be a string or null")
    for target in (signed_for, built_for):
        if target is not None and target != device_class:
            raise WrongDeviceClass(target, device_class)


def _finite(doc: Mapping[str, Any], key: str, what: str) -> float:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MalformedEnvelope(f"{what}: {key!r} must be a finite number of epoch seconds")
    return float(value)


def _iso(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"epoch {ts}"


# ----------------------------------------------------------------------------------- manifests


def manifest_signed_content(manifest: Any, expires_at: Any, device_class: Any) -> dict[str, Any]:
    """What the signature of a manifest envelope covers (with the key id added by the signer)."""
    return {"type": MANIFEST_TYPE, "manifest": manifest, "expires_at": expires_at,
            "device_class": device_class}




def verify_envelope(
    envelope: Any,
    trusted_keys: Mapping[str, bytes],
    *,
    now: float,
    device_class: str | None,
    running_version: int | None,
    rollback_order: RollbackOrder | None = None,
) -> dict[str, Any]:
    """The manifest inside ``envelope`` if this device may act on it; else a :class:`TrustError`.

    Checks, in order: shape, signature (key by id among ``trusted_keys``), expiry, device class,
    and version. ``running_version`` is the active version *of the same model* (None if the
    device runs none): a version not above it is refused unless ``rollback_order`` (from
    :func:`verify_rollback_order`) names exactly this model and version.
    """
    what = "manifest envelope"
    if not isinstance(envelope, dict):
        raise MalformedEnvelope(f"{what} must be an object")
    if "manifest" not in envelope:
        if envelope.get("signature") is None:
            raise UnsignedManifest("a bare manifest, not a signed envelope")
        raise MalformedEnvelope(f"{what} has no 'manifest'")
    manifest, dev_class = envelope["manifest"], envelope.get("device_class")
    if not isinstance(manifest, dict):
        raise MalformedEnvelope(f"{what}: 'manifest' must be an object")
    if dev_class is not None and not isinstance(dev_class, str):
        raise MalformedEnvelope(f"{what}: 'device_class' must be a string or null")
    if envelope.get("signature") is None:
        raise UnsignedManifest(f"{what} carries no signature")
    expires_at = _finite(envelope, "expires_at", what)
    check_signature(what, envelope,
                     manifest_signed_content(manifest, envelope["expires_at"], dev_class), trusted_keys)

    model, version = manifest.get("model"), manifest.get("version")
    label = f"manifest {model}:{version}"
    if now >= expires_at:
        raise ExpiredManifest(label, expires_at, now)
    check_class_target(dev_class, manifest.get("device_class"), device_class)
    if isinstance(version, bool) or not isinstance(version, int) or not isinstance(model, str):
        raise MalformedEnvelope(f"{what}: manifest needs a string 'model' and an integer 'version'")
    if running_version is not None and version <= running_version:
        if rollback_order is None:
            raise DowngradeRefused(f"{label} is not newer than the running version "
                                   f"{running_version}; going back needs a signed rollback order")
        if (rollback_order.model, rollback_order.to_version) != (model, version):
            raise DowngradeRefused(f"{label} is not newer than the running version "
                                   f"{running_version}, and the rollback order is for "
                                   f"{rollback_order.model}:{rollback_order.to_version}")
        if now >= rollback_order.expires_at:
            raise DowngradeRefused(f"the rollback order to {label} expired at "
                                   f"{_iso(rollback_order.expires_at)}")
    return copy.deepcopy(manifest)


# ------------------------------------------------------------------------------ agent bundles


def agent_manifest_signed_content(manifest: Any, expires_at: Any,
                                  device_class: Any) -> dict[str, Any]:
    """What the signature of an agent bundle's envelope covers (with the key id)."""
    return {"type": AGENT_MANIFEST_TYPE, "manifest": manifest, "expires_at": expires_at,
            "device_class": device_class}


def verify_agent_envelope(envelope: Any, trusted_keys: Mapping[str, bytes], *, now: float,
                          device_class: str | None) -> dict[str, Any]:
    """The agent manifest inside ``envelope`` if this device may stage it; else a
    :class:`TrustError`. Same envelope shape as a model's (manifest, expires_at, device_class,
    signature), checked in the same order: shape, signature, expiry, device class. There is no
    version order among agent versions (labels, not numbers): the controller names the one
    version a device should run, and the signature and expiry are what make it trustworthy.
    """
    what = "agent manifest envelope"
    if not isinstance(envelope, dict):
        raise MalformedEnvelope(f"{what} must be an object")
    if envelope.get("signature") is None:
        raise UnsignedManifest(f"{what} carries no signature")
    manifest, dev_class = envelope.get("manifest"), envelope.get("device_class")
    if not isinstance(manifest, dict):
        raise MalformedEnvelope(f"{what}: 'manifest' must be an object")
    if dev_class is not None and not isinstance(dev_class, str):
        raise MalformedEnvelope(f"{what}: 'device_class' must be a string or null")
    expires_at = _finite(envelope, "expires_at", what)
    check_signature(what, envelope, agent_manifest_signed_content(
        manifest, envelope["expires_at"], dev_class), trusted_keys)
    label = f"agent manifest {manifest.get('version')}"
    if now >= expires_at:
        raise ExpiredManifest(label, expires_at, now)
    check_class_target(dev_class, None, device_class)
    return copy.deepcopy(manifest)


# ------------------------------------------------------------------------------ rollback orders


def rollback_signed_content(order: Any) -> dict[str, Any]:
    """What the signature of a rollback order covers (with the key id added by the signer)."""
    return {"type": ROLLBACK_ORDER_TYPE, "order": order}




def verify_rollback_order(
    envelope: Any,
    trusted_keys: Mapping[str, bytes],
    *,
    now: float,
    device_id: str,
    selector_matches: Callable[[str], bool] | None = None,
) -> RollbackOrder:
    """The order if it is signed by a trusted key, unexpired and addressed to this device.

    An order addressed by selector needs ``selector_matches`` (the agent's label matcher); without
    one it is refused, never assumed to match.
    """
    what = "rollback order"
    if not isinstance(envelope, dict) or not isinstance(envelope.get("order"), dict):
        raise MalformedEnvelope(f"{what} must be an object with an 'order' object")
    order = envelope["order"]
    key_id = check_signature(what, envelope, rollback_signed_content(order), trusted_keys)
    model, to_version = order.get("model"), order.get("to_version")
    target_id, selector = order.get("device_id"), order.get("selector")
    if (not isinstance(model, str) or isinstance(to_version, bool)
            or not isinstance(to_version, int)):
        raise MalformedEnvelope(f"{what} needs a string 'model' and an integer 'to_version'")
    if not all(x is None or isinstance(x, str) for x in (target_id, selector)):
        raise MalformedEnvelope(f"{what}: 'device_id' and 'selector' must be strings or null")
    issued_at, expires_at = _finite(order, "issued_at", what), _finite(order, "expires_at", what)
    if now >= expires_at:
        raise ExpiredManifest(f"{what} to {model}:{to_version}", expires_at, now)
    if target_id is not None:
        if target_id != device_id:
            raise NotForThisDevice(f"{what} is for device {target_id!r}, this is {device_id!r}")
    elif selector is None:
        raise MalformedEnvelope(f"{what} names neither a device_id nor a selector")
    elif selector_matches is None or not selector_matches(selector):
        raise NotForThisDevice(f"{what} is for devices matching {selector!r}; this one does not")
    return RollbackOrder(model, to_version, issued_at, expires_at, target_id, selector, key_id)
