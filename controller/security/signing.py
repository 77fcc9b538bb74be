"""Signing manifests and rollback orders, and making signing keys: the controller's half of
the signed envelope whose format and verification are in :mod:`edgewise_wire.envelope`.

Needs ``cryptography`` (the controller extra); a device never imports this module.
"""

from __future__ import annotations

import base64
import copy
import math
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgewise_wire.envelope import (
    ALG,
    agent_manifest_signed_content,
    canonical_bytes,
    key_id_of,
    key_id_of_raw,
    manifest_signed_content,
    rollback_signed_content,
)
from edgewise_wire.key_update import key_update_signed_content
from edgewise_wire.seal import digest_of, seal_signed_content


def generate_keypair() -> tuple[bytes, bytes, str]:
    """A new signing key: ``(private_pem, public_pem, key_id)``; the private PEM is unencrypted.

    Needs ``cryptography`` (the controller extra).
    """
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_pem, public_pem, key_id_of(public_pem)


def _load_private(private_pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"signing key is a {type(key).__name__}, not an Ed25519 private key")
    return key


def _sign(private_pem: bytes, signed: dict[str, Any]) -> dict[str, str]:
    """Sign ``signed`` plus the key id; returns the ``signature`` block."""
    private = _load_private(private_pem)
    key_id = key_id_of_raw(private.public_key().public_bytes(serialization.Encoding.Raw,
                                                       serialization.PublicFormat.Raw))
    sig = private.sign(canonical_bytes({**signed, "key_id": key_id}))
    return {"key_id": key_id, "alg": ALG, "sig": base64.b64encode(sig).decode("ascii")}


def sign_manifest(manifest_dict: Mapping[str, Any], private_key_pem: bytes, *,
                  expires_at: float, device_class: str | None = None) -> dict[str, Any]:
    """Wrap ``manifest_dict`` (``Manifest.to_dict()``) in a signed envelope."""
    if not math.isfinite(expires_at):
        raise ValueError("expires_at must be a finite epoch time")
    manifest = copy.deepcopy(dict(manifest_dict))
    expires = float(expires_at)
    signature = _sign(private_key_pem, manifest_signed_content(manifest, expires, device_class))
    return {"manifest": manifest, "expires_at": expires, "device_class": device_class,
            "signature": signature}


def sign_agent_manifest(manifest_dict: Mapping[str, Any], private_key_pem: bytes, *,
                        expires_at: float, device_class: str | None = None) -> dict[str, Any]:
    """Wrap ``manifest_dict`` (``AgentManifest.to_dict()``) in a signed envelope of the agent
    bundle type (:data:`edgewise_wire.envelope.AGENT_MANIFEST_TYPE`)."""
    if not math.isfinite(expires_at):
        raise ValueError("expires_at must be a finite epoch time")
    manifest = copy.deepcopy(dict(manifest_dict))
    expires = float(expires_at)
    signature = _sign(private_key_pem,
                      agent_manifest_signed_content(manifest, expires, device_class))
    return {"manifest": manifest, "expires_at": expires, "device_class": device_class,
            "signature": signature}


def sign_rollback_order(private_key_pem: bytes, *, model: str, to_version: int,
                        issued_at: float, expires_at: float, device_id: str | None = None,
                        selector: str | None = None) -> dict[str, Any]:
    """A signed order to go back to ``model:to_version``, for one device id *or* a selector."""
    if (device_id is None) == (selector is None):
        raise ValueError("a rollback order names exactly one of device_id and selector")
    if not (math.isfinite(issued_at) and math.isfinite(expires_at)) or expires_at <= issued_at:
        raise ValueError("a rollback order needs finite issued_at < expires_at")
    order = {"model": model, "to_version": to_version, "device_id": device_id,
             "selector": selector, "issued_at": float(issued_at), "expires_at": float(expires_at)}
    signature = _sign(private_key_pem, rollback_signed_content(order))
    return {"order": order, "signature": signature}


def sign_seal(private_key_pem: bytes, *, device_id: str, counter: int, issued_at: float,
              envelope: Mapping[str, Any] | None,
              order: Mapping[str, Any] | None) -> dict[str, Any]:
    """The seal of one device's desired state (``edgewise_wire.seal``): its counter, bound to
    the envelope and rollback order it travels with."""
    if isinstance(counter, bool) or not isinstance(counter, int) or counter <= 0:
        raise ValueError("a seal counter is a positive integer")
    seal: dict[str, Any] = {"device_id": device_id, "counter": counter,
                            "issued_at": float(issued_at), "envelope": digest_of(envelope),
                            "order": digest_of(order)}
    seal["signature"] = _sign(private_key_pem, seal_signed_content(seal))
    return seal


def sign_key_update(private_key_pems: list[bytes], update: Mapping[str, Any]
                    ) -> list[dict[str, str]]:
    """The signatures of a key update (``edgewise_wire.key_update``), one per key given."""
    content = key_update_signed_content(copy.deepcopy(dict(update)))
    return [_sign(pem, content) for pem in private_key_pems]
