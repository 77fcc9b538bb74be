"""The freshness seal: what makes a signed desired state single-use and addressed to one device.

A manifest envelope (:mod:`edgewise_wire.envelope`) is signed once for the whole fleet and is
valid until it expires, so on its own it could be *replayed*: a device that was rolled back from
v2 to v1 by a signed rollback order would take the captured v2 envelope again, since v2 is above
v1. The seal closes that. Each desired state the controller publishes carries one seal per
device::

    "seal": {
      "device_id":  "pi-0042",            # the one device that may act on it
      "counter":    1765112345678,        # per device, strictly increasing (controller's DB)
      "issued_at":  1765112345.678,       # epoch seconds, for the operator
      "envelope":   "<sha256 hex>" | null, # canonical JSON of the manifest envelope it goes with
      "order":      "<sha256 hex>" | null, # canonical JSON of the rollback order it goes with
      "signature":  {"key_id", "alg", "sig"}
    }

The signature covers ``{"type": "edgewise.seal.v1", device_id, counter, issued_at, envelope,
order, key_id}`` in canonical JSON. The device keeps the highest counter it accepted (durably)
and refuses a seal whose counter is lower, or equal unless it is the very seal it accepted last
(the broker's retained copy delivered again after a reconnect: nothing new happens). So a
captured desired state, its rollback order included, works once; a seal cannot be moved onto
another envelope or order (it names their digests), nor to another device (it names the id).

Compatibility: an agent from before seals ignores the field and keeps its older checks. This
agent, enforcing signatures, takes a desired state *without* a seal only as long as it has never
accepted a sealed one (a controller from before seals); from the first sealed one on, an unsealed
desired state is refused as a possible replay of something captured before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgewise_wire.envelope import (
    MalformedEnvelope,
    NotForThisDevice,
    TrustError,
    UnsignedManifest,
    canonical_bytes,
    check_signature,
)

SEAL_TYPE = "edgewise.seal.v1"
MAX_COUNTER = 2 ** 63 - 1


class ReplayRefused(TrustError):
    """A counter not above the highest this device accepted: a replay, or an old message."""

    def __init__(self, counter: int, highest: int) -> None:
        super().__init__(f"replay refused: counter {counter} is not above {highest}, the highest "
                         "this device has accepted (a captured or outdated desired state)")
        self.counter = counter
        self.highest = highest


class UnsealedRefused(TrustError):
    """No seal, on a device that has accepted sealed desired states before."""


@dataclass(frozen=True)
class Seal:
    """A verified seal; only :func:`verify_seal` builds one."""

    device_id: str
    counter: int
    issued_at: float
    key_id: str
    fingerprint: str  # sha256 of the whole seal: tells a redelivery from a replay


def digest_of(doc: Any) -> str | None:
    """sha256 hex of the canonical JSON of ``doc`` (None for None): what a seal names."""
    if doc is None:
        return None
    return hashlib.sha256(canonical_bytes(doc)).hexdigest()


def seal_signed_content(seal: Mapping[str, Any]) -> dict[str, Any]:
    """What the signature of a seal covers (with the key id added by the signer)."""
    return {"type": SEAL_TYPE, "device_id": seal.get("device_id"),
            "counter": seal.get("counter"), "issued_at": seal.get("issued_at"),
            "envelope": seal.get("envelope"), "order": seal.get("order")}


def verify_seal(seal: Any, trusted_keys: Mapping[str, bytes], *, device_id: str,
                envelope: Mapping[str, Any] | None, order: Mapping[str, Any] | None) -> Seal:
    """The seal if a trusted key signed it, for this device, over exactly this envelope and
    order; else a :class:`TrustError`. Freshness is :func:`check_fresh`'s (it needs state)."""
    what = "seal"
    if not isinstance(seal, dict):
        raise MalformedEnvelope(f"{what} must be an object")
    if seal.get("signature") is None:
        raise UnsignedManifest(f"{what} carries no signature")
    counter, issued_at, target = seal.get("counter"), seal.get("issued_at"), seal.get("device_id")
    if isinstance(counter, bool) or not isinstance(counter, int) \
            or not 0 < counter <= MAX_COUNTER:
        raise MalformedEnvelope(f"{what}: 'counter' must be a positive 64-bit integer")
    if isinstance(issued_at, bool) or not isinstance(issued_at, (int, float)):
        raise MalformedEnvelope(f"{what}: 'issued_at' must be a number of epoch seconds")
    if not isinstance(target, str):
        raise MalformedEnvelope(f"{what}: 'device_id' must be a string")
    for name in ("envelope", "order"):
        if seal.get(name) is not None and not isinstance(seal.get(name), str):
            raise MalformedEnvelope(f"{what}: {name!r} must be a sha256 hex string or null")
    key_id = check_signature(what, seal, seal_signed_content(seal), trusted_keys)
    if target != device_id:
        raise NotForThisDevice(f"{what} is for device {target!r}, this is {device_id!r}")
    if seal.get("envelope") != digest_of(envelope):
        raise MalformedEnvelope(f"{what} was issued for another manifest envelope "
                                "(its digest does not match the one it travels with)")
    if seal.get("order") != digest_of(order):
        raise MalformedEnvelope(f"{what} was issued for another rollback order (or none)")
    return Seal(target, counter, float(issued_at), key_id, digest_of(seal) or "")


def check_fresh(seal: Seal | None, *, highest: int, last_fingerprint: str | None,
                what: str = "desired state") -> bool:
    """Whether ``seal`` may be acted upon given the device's trust state (``highest`` and
    ``last_fingerprint`` of the stream ``what`` belongs to); raises :class:`ReplayRefused` or
    :class:`UnsealedRefused` if not. True: it is new (the caller records its counter before
    acting); False: it is the seal accepted last, delivered again."""
    if seal is None:
        if highest > 0:
            raise UnsealedRefused(
                f"refused an unsealed {what}: this device has accepted sealed ones (up "
                f"to counter {highest}), so one without a seal may be a captured old message")
        return False
    if seal.counter > highest:
        return True
    if seal.counter == highest and seal.fingerprint == last_fingerprint:
        return False
    raise ReplayRefused(seal.counter, highest)
