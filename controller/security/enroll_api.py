"""``POST /api/v1/enroll`` and ``POST /api/v1/enroll/renew``: zero-touch enrollment over HTTP
(:mod:`controller.security.claims` has the policy).

Open to callers without an API token, like ``/api/v1/health``: the claim token in the body is
the credential of an enrollment, and a renewal is proved by the request's signature with the
enrolled key. A refusal by policy (unknown, expired or revoked token, quota used, renewal of a
revoked device) answers 403 with the reason; a malformed request 422; a device id requested
with another key 409.

The answer carries everything the device needs besides its key: its certificate, the fleet CA,
the broker's address, the manifest-signing keys to trust, its labels and device class::

    {"status": "issued" | "pending" | "rejected", "device_id", "certificate", "ca",
     "not_before", "not_after", "broker": {"host", "port"}, "trusted_keys": [PEM, ...],
     "labels", "device_class", "reason"}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography import x509
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from controller.security.broker_config import load_broker_settings
from controller.security.claims import ClaimRefused, ClaimStore, Outcome
from controller.security.signing_keys import SigningKeys

ENROLL_PATHS = frozenset({"/api/v1/enroll", "/api/v1/enroll/renew"})


class EnrollBody(BaseModel):
    claim: str = Field(min_length=1, max_length=256)
    device_id: str = Field(min_length=1, max_length=64)
    csr: str = Field(min_length=1, max_length=8192)


class RenewBody(BaseModel):
    device_id: str = Field(min_length=1, max_length=64)
    csr: str = Field(min_length=1, max_length=8192)


def enroll_router(data_dir: Path) -> APIRouter:
    router = APIRouter()
    claims = ClaimStore.for_data_dir(data_dir)
    keys = SigningKeys.for_data_dir(data_dir)

    def answer(outcome: Outcome) -> dict[str, Any]:
        body: dict[str, Any] = {"status": outcome.status, "device_id": outcome.device_id,
                                "labels": outcome.labels or {},
                                "device_class": outcome.device_class, "reason": outcome.reason}
        if outcome.certificate is not None:
            settings = load_broker_settings(claims.ca)
            cert = x509.load_pem_x509_certificate(outcome.certificate)
            body.update(
                certificate=outcome.certificate.decode(), ca=claims.ca.ca_cert_pem().decode(),
                not_before=cert.not_valid_before_utc.timestamp(),
                not_after=cert.not_valid_after_utc.timestamp(),
                broker=({"host": settings.hostnames[0], "port": settings.cert_port}
                        if settings is not None and settings.hostnames else None),
                trusted_keys=[k.public_pem.decode() for k in keys.trusted()])
        return body

    @router.post("/api/v1/enroll")
    def enroll(body: EnrollBody) -> dict[str, Any]:
        try:
            return answer(claims.request(body.claim, body.device_id, body.csr))
        except ClaimRefused as exc:
            raise HTTPException(403, str(exc)) from None

    @router.post("/api/v1/enroll/renew")
    def renew(body: RenewBody) -> dict[str, Any]:
        try:
            return answer(claims.renew(body.device_id, body.csr))
        except ClaimRefused as exc:
            raise HTTPException(403, str(exc)) from None

    return router
