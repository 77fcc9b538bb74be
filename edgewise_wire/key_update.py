"""Key updates over the air: the controller tells devices which signing keys to trust.

One message, retained on the fleet-wide topic ``{root}/trust/keys``
(:func:`edgewise_wire.topics.keys_topic`), states
the whole set the controller wants trusted and the keys it retired::

    {"schema": 1, "type": "keys",
     "update": {"sequence": 7, "issued_at": 1765112345.6,
                "trusted": {KEY_ID: "-----BEGIN PUBLIC KEY-----...", ...},
                "retired": [KEY_ID, ...]},
     "signatures": [{"key_id", "alg", "sig"}, ...]}

Each signature covers ``{"type": "edgewise.key-update.v1", "update": update, "key_id"}`` in
canonical JSON. The controller signs with every key it has not retired *and* with the keys it
retires in this very update: a device that missed earlier updates (offline during a rotation)
still trusts one of them and can follow. A device applies an update when

* its ``sequence`` is above the last one it applied (an equal one is the retained copy again:
  nothing to do; a lower one is refused as a replay);
* at least one signature is by a key it trusts now and verifies; a signature by a trusted key
  that does not verify refuses the whole update (tampered); signatures by keys it does not know
  are skipped;
* the keys it would trust afterwards are not none (every key listed under its own id).

Being declarative (the whole set, not a diff), the retained message alone brings any device up
to date however many updates it missed, provided it still trusts one key that signed the last.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from edgewise_wire.envelope import (
    BadSignature,
    MalformedEnvelope,
    MisconfiguredTrustedKey,
    TrustError,
    UnknownSigningKey,
    check_signature,
    key_id_of,
)
from edgewise_wire.errors import SchemaError
from edgewise_wire.message_base import Message

KEY_UPDATE_TYPE = "edgewise.key-update.v1"
MAX_KEYS = 32


def key_update_signed_content(update: Any) -> dict[str, Any]:
    """What each signature of a key update covers (with the key id added by the signer)."""
    return {"type": KEY_UPDATE_TYPE, "update": update}


class StaleKeyUpdate(TrustError):
    """A sequence below the last key update this device applied."""


@dataclass(frozen=True)
class KeyUpdateMessage(Message):
    """The message as it travels; verify it with :func:`verify_key_update` before use."""

    TYPE: ClassVar[str] = "keys"
    update: dict[str, Any]
    signatures: list[dict[str, Any]]

    def body(self) -> dict[str, Any]:
        return {"update": self.update, "signatures": self.signatures}

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> KeyUpdateMessage:
        update, signatures = d.get("update"), d.get("signatures")
        if not isinstance(update, dict):
            raise SchemaError("field 'update' must be an object")
        if not (isinstance(signatures, list) and signatures
                and all(isinstance(s, dict) for s in signatures)) or len(signatures) > MAX_KEYS:
            raise SchemaError(f"field 'signatures' must be a list of 1 to {MAX_KEYS} objects")
        return cls(update, signatures)


@dataclass(frozen=True)
class KeyUpdate:
    """A verified key update; only :func:`verify_key_update` builds one."""

    sequence: int
    issued_at: float
    trusted: dict[str, bytes]  # key id -> public PEM
    retired: frozenset[str]
    signed_by: tuple[str, ...]  # the device's trusted keys whose signatures verified


def verify_key_update(message: KeyUpdateMessage, trusted_keys: Mapping[str, bytes], *,
                      last_sequence: int) -> KeyUpdate | None:
    """The update if this device should apply it; None if it is the one applied last; else a
    :class:`TrustError` saying why not."""
    what = "key update"
    update = message.update
    sequence, issued_at = update.get("sequence"), update.get("issued_at")
    trusted, retired = update.get("trusted"), update.get("retired")
    if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence <= 0:
        raise MalformedEnvelope(f"{what}: 'sequence' must be a positive integer")
    if isinstance(issued_at, bool) or not isinstance(issued_at, (int, float)) \
            or not math.isfinite(issued_at):
        raise MalformedEnvelope(f"{what}: 'issued_at' must be a number of epoch seconds")
    if not (isinstance(trusted, dict) and 0 < len(trusted) <= MAX_KEYS
            and all(isinstance(k, str) and isinstance(v, str) for k, v in trusted.items())):
        raise MalformedEnvelope(f"{what}: 'trusted' must map 1 to {MAX_KEYS} key ids to PEM text")
    if not (isinstance(retired, list) and len(retired) <= 1024
            and all(isinstance(k, str) for k in retired)):
        raise MalformedEnvelope(f"{what}: 'retired' must be a list of key ids")
    if set(trusted) & set(retired):
        raise MalformedEnvelope(f"{what} both trusts and retires {sorted(set(trusted) & set(retired))}")
    signed_by = []
    for block in message.signatures:
        try:
            signed_by.append(check_signature(what, {"signature": block},
                                             key_update_signed_content(update), trusted_keys))
        except UnknownSigningKey:
            continue  # signed by a key this device never had (or already retired): not a vote
    if not signed_by:
        ids = [b.get("key_id") for b in message.signatures]
        raise UnknownSigningKey(", ".join(str(i) for i in ids), trusted_keys)
    if sequence < last_sequence:
        raise StaleKeyUpdate(f"{what} {sequence} is older than {last_sequence}, the last this "
                             "device applied (a replay of a captured update)")
    if sequence == last_sequence:
        return None
    pems: dict[str, bytes] = {}
    for kid, pem in trusted.items():
        try:
            actual = key_id_of(pem.encode())
        except TrustError as exc:
            raise MisconfiguredTrustedKey(f"{what}: key {kid!r}: {exc}") from None
        if actual != kid:
            raise MisconfiguredTrustedKey(f"{what} lists key {actual!r} under the id {kid!r}")
        pems[kid] = pem.encode()
    return KeyUpdate(sequence, float(issued_at), pems, frozenset(retired), tuple(signed_by))


__all__ = ["BadSignature", "KeyUpdate", "KeyUpdateMessage",
           "key_update_signed_content", "verify_key_update"]
