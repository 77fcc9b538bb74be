"""Zero-touch enrollment: claim tokens, certificate requests, and the policy between them.

As AWS IoT fleet provisioning or Azure DPS group enrollment: a device with no credential yet
makes its own key pair, and sends a certificate request (:mod:`edgewise_wire.csr`) with a *claim
token* baked into its image. The token names a fleet group and carries the policy:

* ``quota``: how many devices it may enroll; the next one is refused;
* ``labels`` (and a ``device_class``): what every device enrolled by it gets in its agent.toml;
* ``expires_at``: refused from then on;
* ``approval``: ``auto`` issues the certificate at once; ``manual`` records the request as
  *pending* until an operator runs ``edgewise devices approve ID`` (or ``reject``).

Only the token's sha256 is stored. A request counts against the quota when it is recorded
(pending ones included, so a flood of requests cannot queue past it); a rejected one gives its
place back. The device asks again with the same request until it has its certificate (the
answer is idempotent: same device id and same public key, same outcome); another key for a
device id already requested or enrolled is refused, so a token holder cannot take over an
enrolled device.

Renewal needs no token and no operator: a request for an enrolled, unrevoked device id whose
public key is the one its certificate was issued for proves possession of that key (the request
is signed by it), and gets a new certificate. ``edgewise devices revoke`` removes the identity,
after which renewal is refused.

State: ``{data_dir}/pki/claims.json`` (0600), changed under an exclusive ``flock``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from controller.errors import ConflictError, NotFoundError, ValidationError
from controller.security.pki import FleetCA, _write_private, validate_identity_name
from edgewise_wire.topics import validate_device_id

APPROVALS = ("auto", "manual")
MAX_CSR_BYTES = 8192
RENEW_DAYS = 90  # certificates of enrolled-by-claim devices; renewed at a third left


class ClaimRefused(ValidationError):
    """The request is not allowed by the token's policy (the message says which rule)."""


@dataclass(frozen=True)
class Outcome:
    device_id: str
    status: str  # "issued", "pending", "rejected"
    certificate: bytes | None = None
    labels: dict[str, str] | None = None
    device_class: str = "generic"
    reason: str | None = None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


def _public_der(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def parse_csr(csr_pem: str, device_id: str) -> x509.CertificateSigningRequest:
    """The request, if well formed, self-signed, and for ``CN = device_id``."""
    if len(csr_pem) > MAX_CSR_BYTES:
        raise ValidationError(f"certificate request is larger than {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValidationError(f"not a PEM certificate request: {exc}") from None
    if not csr.is_signature_valid:
        raise ValidationError("the certificate request's signature does not verify (it must be "
                              "signed by the key it asks a certificate for)")
    names = [a.value for a in csr.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)]
    if names != [device_id]:
        raise ValidationError(f"the certificate request is for CN={names}, not {device_id!r}")
    return csr


class ClaimStore:
    def __init__(self, ca: FleetCA) -> None:
        self.ca = ca
        self.path = ca.dir / "claims.json"

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> ClaimStore:
        return cls(FleetCA.for_data_dir(data_dir))

    # -- tokens (operator, on the controller host) ---------------------------------------------

    def create_token(self, name: str, *, group: str, quota: int, expires_in_s: float,
                     labels: dict[str, str] | None = None, device_class: str = "generic",
                     approval: str = "auto") -> str:
        """A new claim token (printed once; only its hash is kept)."""
        if approval not in APPROVALS:
            raise ValidationError(f"approval must be one of {APPROVALS}, not {approval!r}")
        if quota < 1:
            raise ValidationError("a claim token's quota is at least 1 device")
        if not expires_in_s > 0:
            raise ValidationError("a claim token must expire in the future")
        validate_identity_name(name)
        token = "ewc_" + secrets.token_urlsafe(32)
        with self._locked() as state:
            if name in state["tokens"]:
                raise ConflictError(f"claim token {name!r} exists; revoke it or choose a name")
            state["tokens"][name] = {
                "hash": _hash(token), "group": group, "quota": quota,
                "labels": {**(labels or {}), "group": group}, "device_class": device_class,
                "approval": approval, "created_at": _now(), "expires_at": _now() + expires_in_s,
                "revoked": False}
        return token

    def revoke_token(self, name: str) -> None:
        with self._locked() as state:
            if name not in state["tokens"]:
                raise NotFoundError("claim token", name)
            state["tokens"][name]["revoked"] = True

    def tokens(self) -> list[dict[str, Any]]:
        state = self._load()
        out = []
        for name, row in sorted(state["tokens"].items()):
            used = sum(1 for r in state["requests"].values()
                       if r["token"] == name and r["status"] != "rejected")
            out.append({"name": name, **{k: v for k, v in row.items() if k != "hash"},
                        "used": used})
        return out

    # -- requests (devices, through the REST API) -------------------------------------------------

    def request(self, claim: str, device_id: str, csr_pem: str, *, days: int = RENEW_DAYS
                ) -> Outcome:
        """A device's enrollment by claim: issued, pending or rejected, by the token's policy."""
        try:
            validate_device_id(device_id)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        csr = parse_csr(csr_pem, device_id)
        key = _public_der(csr).hex()
        with self._locked() as state:
            name, token = self._token(state, claim)
            existing = state["requests"].get(device_id)
            if existing is not None:
                if existing["public_key"] != key:
                    raise ConflictError(f"device {device_id!r} was requested or enrolled with "
                                        "another key; an operator must revoke it first")
                if existing["status"] in ("pending", "rejected"):
                    return self._outcome(device_id, existing, token)
                if not self.ca.exists or self.ca.current(device_id) is None:
                    raise ClaimRefused(f"device {device_id!r} was revoked; an operator must "
                                       "enroll it again")
                # issued already: the answer was lost, or the device starts over with its key
                return self._issue_locked(state, device_id, existing, token, csr, days)
            used = sum(1 for r in state["requests"].values()
                       if r["token"] == name and r["status"] != "rejected")
            if used >= token["quota"]:
                raise ClaimRefused(f"claim token {name!r} has used its quota of "
                                   f"{token['quota']} devices")
            if self.ca.exists and self.ca.current(device_id) is not None:
                raise ConflictError(f"device {device_id!r} is enrolled already (by bundle); "
                                    "revoke it first to enroll it by claim")
            row = {"token": name, "public_key": key, "csr": csr_pem, "status": "pending",
                   "requested_at": _now(), "decided_at": None, "reason": None}
            state["requests"][device_id] = row
            if token["approval"] == "auto":
                return self._issue_locked(state, device_id, row, token, csr, days)
            return self._outcome(device_id, row, token)

    def renew(self, device_id: str, csr_pem: str, *, days: int = RENEW_DAYS) -> Outcome:
        """A new certificate for an enrolled device's own key (no token, no operator)."""
        csr = parse_csr(csr_pem, device_id)
        key = _public_der(csr).hex()
        with self._locked() as state:
            row = state["requests"].get(device_id)
            current = self.ca.current(device_id) if self.ca.exists else None
            if row is None or row["status"] != "issued" or current is None:
                raise ClaimRefused(f"device {device_id!r} is not enrolled by claim (or was "
                                   "revoked): renewal refused")
            if row["public_key"] != key:
                raise ClaimRefused("renewal must be for the key the device was enrolled with")
            cert, _ = self.ca.issue_for_public_key(device_id, csr.public_key(), days=days,
                                                   renewal=True)
            token = state["tokens"].get(row["token"], {})
            return Outcome(device_id, "issued", cert, token.get("labels"),
                           token.get("device_class", "generic"))

    # -- operator decisions -----------------------------------------------------------------------

    def pending(self) -> list[dict[str, Any]]:
        state = self._load()
        tokens = state["tokens"]
        return [{"device_id": d, "token": r["token"],
                 "group": tokens.get(r["token"], {}).get("group"),
                 # what the device gets once approved: an operator decides knowing it
                 "labels": tokens.get(r["token"], {}).get("labels") or {},
                 "device_class": tokens.get(r["token"], {}).get("device_class", "generic"),
                 "requested_at": r["requested_at"],
                 "public_key_sha256": hashlib.sha256(bytes.fromhex(r["public_key"])).hexdigest()}
                for d, r in sorted(state["requests"].items()) if r["status"] == "pending"]

    def approve(self, device_id: str, *, days: int = RENEW_DAYS) -> Outcome:
        with self._locked() as state:
            row = self._pending_row(state, device_id)
            token = state["tokens"].get(row["token"], {})
            csr = x509.load_pem_x509_csr(row["csr"].encode())
            return self._issue_locked(state, device_id, row, token, csr, days)

    def reject(self, device_id: str, reason: str) -> Outcome:
        with self._locked() as state:
            row = self._pending_row(state, device_id)
            row.update(status="rejected", decided_at=_now(), reason=reason or "rejected")
            return self._outcome(device_id, row, state["tokens"].get(row["token"], {}))

    # -- internals -----------------------------------------------------------------------------

    def _token(self, state: dict[str, Any], claim: str) -> tuple[str, dict[str, Any]]:
        digest = _hash(claim)
        for name, row in state["tokens"].items():
            if secrets.compare_digest(row["hash"], digest):
                if row["revoked"]:
                    raise ClaimRefused(f"claim token {name!r} was revoked")
                if _now() >= row["expires_at"]:
                    raise ClaimRefused(f"claim token {name!r} has expired")
                return name, row
        raise ClaimRefused("unknown claim token")

    def _pending_row(self, state: dict[str, Any], device_id: str) -> dict[str, Any]:
        row = state["requests"].get(device_id)
        if row is None:
            raise NotFoundError("enrollment request", device_id)
        if row["status"] != "pending":
            raise ConflictError(f"the request of {device_id!r} is {row['status']}, not pending")
        return row

    def _issue_locked(self, state: dict[str, Any], device_id: str, row: dict[str, Any],
                      token: dict[str, Any], csr: x509.CertificateSigningRequest,
                      days: int) -> Outcome:
        self.ca.init()
        replace = row["status"] == "issued"  # the same key asks again: a fresh certificate
        cert, _ = self.ca.issue_for_public_key(device_id, csr.public_key(), days=days,
                                               replace=False, renewal=replace)
        row.update(status="issued", decided_at=row.get("decided_at") or _now())
        return Outcome(device_id, "issued", cert, token.get("labels"),
                       token.get("device_class", "generic"))

    @staticmethod
    def _outcome(device_id: str, row: dict[str, Any], token: dict[str, Any]) -> Outcome:
        return Outcome(device_id, row["status"], None, token.get("labels"),
                       token.get("device_class", "generic"), row.get("reason"))

    def _load(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"tokens": {}, "requests": {}}
        return state

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.ca.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.ca.dir / ".claims.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state = self._load()
            yield state
            _write_private(self.path, json.dumps(state, indent=1, sort_keys=True).encode())
        finally:
            os.close(fd)
