"""The controller's Ed25519 manifest-signing keys (see :mod:`edgewise_wire.envelope`).

Layout under ``{data_dir}/signing-keys/``::

    keys.json        {"active": KEY_ID, "keys": {KEY_ID: {"created_at", "retired_at"}},
                      "sequence": N, "changed_at": ISO}   # N: changes so far (key updates)
    KEY_ID.key       private key, PKCS#8 PEM, mode 0600
    KEY_ID.pub       public key, SubjectPublicKeyInfo PEM

Rotation without a flag day, and without a time in which devices refuse updates:

1. ``create`` a second key: trusted (its public key goes into enrollment bundles at once, with
   every key not retired) but not signing yet; the running controller publishes a *key update*
   (:meth:`SigningKeys.key_update`, :mod:`edgewise_wire.key_update`) signed by the keys the
   devices trust, and they add it over the air (an offline device gets the retained update when
   it reconnects);
2. ``activate`` it: the controller signs with it from the next publish;
3. ``retire`` the old key: the next key update (signed by the new key *and* the old one, so a
   device that missed step 1 still follows) tells devices to stop trusting it.

``rotate`` is create and activate in one step: a device that does not trust the new key yet
refuses every new desired state (and keeps serving its model) until it gets the key; it suits
a fleet where no device enforces signatures yet.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.errors import ConflictError, NotFoundError
from controller.security.pki import PkiError, _write_private, _write_public
from controller.security.signing import generate_keypair


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    created_at: str
    retired_at: str | None
    active: bool
    public_pem: bytes


class SigningKeys:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> SigningKeys:
        return cls(data_dir / "signing-keys")

    def all(self) -> list[SigningKey]:
        state = self._load()
        return [SigningKey(kid, row["created_at"], row.get("retired_at"),
                           kid == state.get("active"), (self.dir / f"{kid}.pub").read_bytes())
                for kid, row in sorted(state["keys"].items(), key=lambda kv: kv[1]["created_at"])]

    def trusted(self) -> list[SigningKey]:
        """The keys devices should trust: every key not retired, the active one first."""
        keys = [k for k in self.all() if k.retired_at is None]
        return sorted(keys, key=lambda k: not k.active)

    def active(self) -> SigningKey | None:
        return next((k for k in self.all() if k.active), None)

    def active_private_pem(self) -> bytes:
        key = self.active()
        if key is None:
            raise PkiError("no manifest-signing key: run `edgewise keys create`")
        return (self.dir / f"{key.key_id}.key").read_bytes()

    def create(self) -> SigningKey:
        """A new key; it becomes the active one only if there is none."""
        with self._locked():
            state = self._load()
            kid = self._new_key(state)
            if state.get("active") is None:
                state["active"] = kid
            self._save(state)
        return next(k for k in self.all() if k.key_id == kid)

    def ensure(self) -> tuple[SigningKey, bool]:
        """The active key, creating one if there is none; True if it was created now."""
        key = self.active()
        if key is not None:
            return key, False
        return self.create(), True

    def activate(self, key_id: str) -> tuple[SigningKey, SigningKey | None]:
        """Make ``key_id`` (created before, not retired) the key that signs; the previously
        active key stays trusted. Returns (now active, previously active or None); the two are
        the same key when it was active already (nothing changes then)."""
        with self._locked():
            state = self._load()
            row = state["keys"].get(key_id)
            if row is None:
                raise NotFoundError("signing key", key_id)
            if row.get("retired_at") is not None:
                # devices were told to stop trusting it: signing with it would be refused
                raise ConflictError(f"{key_id} was retired on {row['retired_at']}; create a new "
                                    "key with `edgewise keys create` instead")
            old = state.get("active")
            if old != key_id:
                state["active"] = key_id
                self._save(state)
        keys = {k.key_id: k for k in self.all()}
        return keys[key_id], keys.get(old) if old else None

    def rotate(self) -> tuple[SigningKey, SigningKey | None]:
        """A new key becomes active at once; the previous active key stays trusted. Returns
        (new, old). Devices that do not trust the new key yet refuse what it signs: prefer
        ``create``, distributing the key, then ``activate``."""
        with self._locked():
            state = self._load()
            old = state.get("active")
            kid = self._new_key(state)
            state["active"] = kid
            self._save(state)
        keys = {k.key_id: k for k in self.all()}
        return keys[kid], keys.get(old) if old else None

    def key_update(self) -> tuple[dict[str, Any], list[bytes]]:
        """The key update devices should apply now and the private keys to sign it with.

        ``{"sequence", "issued_at", "trusted": {id: public PEM}, "retired": [ids]}``; the same
        content for the same ``keys.json`` (replicas publish identical messages). Signed by
        every key whose private half is here, retired ones included: a device that missed
        updates still trusts one of them (at most the 32 newest)."""
        state = self._load()
        rows = sorted(state["keys"].items(), key=lambda kv: kv[1]["created_at"], reverse=True)
        trusted = {kid: (self.dir / f"{kid}.pub").read_text() for kid, row in rows
                   if row.get("retired_at") is None}
        retired = sorted(kid for kid, row in rows if row.get("retired_at") is not None)
        changed = state.get("changed_at") or (rows[-1][1]["created_at"] if rows else _now())
        update = {"sequence": int(state.get("sequence", 0)) + 1,
                  "issued_at": dt.datetime.fromisoformat(changed.replace("Z", "+00:00"))
                  .timestamp(),
                  "trusted": trusted, "retired": retired}
        pems = [(self.dir / f"{kid}.key").read_bytes() for kid, _ in rows[:32]
                if (self.dir / f"{kid}.key").exists()]
        return update, pems

    def retire(self, key_id: str) -> SigningKey:
        """Stop trusting ``key_id`` in new bundles (the active key cannot be retired)."""
        with self._locked():
            state = self._load()
            if key_id not in state["keys"]:
                raise NotFoundError("signing key", key_id)
            if state.get("active") == key_id:
                raise ConflictError(f"{key_id} is the active signing key: `edgewise keys "
                                    "activate` another key first, then retire it")
            state["keys"][key_id]["retired_at"] = _now()
            self._save(state)
        return next(k for k in self.all() if k.key_id == key_id)

    # -- internals ---------------------------------------------------------------------------

    def _new_key(self, state: dict[str, Any]) -> str:
        private_pem, public_pem, kid = generate_keypair()
        _write_private(self.dir / f"{kid}.key", private_pem)
        _write_public(self.dir / f"{kid}.pub", public_pem)
        state["keys"][kid] = {"created_at": _now(), "retired_at": None}
        return kid

    def _load(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads((self.dir / "keys.json").read_text())
        except FileNotFoundError:
            return {"active": None, "keys": {}}
        except (OSError, ValueError) as exc:
            raise PkiError(f"cannot read {self.dir / 'keys.json'}: {exc}") from None
        return state

    def _save(self, state: dict[str, Any]) -> None:
        # every change is a new key update for the devices (see key_update)
        state["sequence"] = int(state.get("sequence", 0)) + 1
        state["changed_at"] = _now()
        _write_private(self.dir / "keys.json", json.dumps(state, indent=2).encode())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
