"""``/api/v1/enrollments``: the operator's side of manual-approval enrollment over REST, as
``edgewise devices pending|approve|reject`` do on the controller host (policy in
:mod:`controller.security.claims`).

* ``GET /enrollments/pending``: requests waiting for a decision (any token that may read), with
  the group, labels and device class the device gets and its public key's fingerprint;
* ``POST /enrollments/{device_id}/approve``: issues the certificate (admin token); the device
  gets it the next time it asks;
* ``POST /enrollments/{device_id}/reject`` with ``{"reason"}``: refuses it (admin token) and
  gives its place in the token's quota back.

Each decision is written to the audit log (``enrollment.approved``, ``enrollment.rejected``)
with the actor of the token that made it (``controller.rest.actor_of``), after the decision is
stored (:mod:`.approvals`, as the host's CLI does). A request that is no longer pending
answers 409, an unknown one 404.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from controller.audit.store import AuditLog
from controller.rest import API, Actor
from controller.security.approvals import approve_enrollment, reject_enrollment
from controller.security.claims import ClaimStore


class RejectBody(BaseModel):
    reason: str = Field("rejected by an operator", min_length=1, max_length=200)


def approvals_router(data_dir: Path, audit: AuditLog,
                     require_admin: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix=f"{API}/enrollments", tags=["enrollment"])
    admin = [Depends(require_admin)]
    claims = ClaimStore.for_data_dir(data_dir)

    @router.get("/pending")
    def pending() -> list[dict[str, Any]]:
        """Enrollment requests waiting for an operator, by device id."""
        return claims.pending()

    @router.post("/{device_id}/approve", dependencies=admin)
    def approve(device_id: str, actor: Actor) -> dict[str, Any]:
        """Issue the device's certificate; it collects it when it asks again."""
        outcome = approve_enrollment(claims, audit, device_id, actor)
        return {"device_id": device_id, "status": outcome.status}

    @router.post("/{device_id}/reject", dependencies=admin)
    def reject(device_id: str, body: RejectBody, actor: Actor) -> dict[str, Any]:
        """Refuse the request; the device is told the reason when it asks again."""
        outcome = reject_enrollment(claims, audit, device_id, body.reason, actor)
        return {"device_id": device_id, "status": outcome.status, "reason": outcome.reason}

    return router
