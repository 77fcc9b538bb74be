"""An operator's decision on a pending enrollment request, and its audit entry: one place for
the REST API (:mod:`.approvals_api`) and the host's `edgewise devices approve|reject`.

The decision is stored first (in ``claims.json``, not in the database, so the two cannot share
a transaction), then written to the audit log as ``enrollment.approved`` or
``enrollment.rejected`` with its actor.
"""

from __future__ import annotations

from controller.audit.store import AuditEntry, AuditLog
from controller.security.claims import ClaimStore, Outcome


def approve_enrollment(claims: ClaimStore, audit: AuditLog, device_id: str,
                       actor: str) -> Outcome:
    """Issue the pending device's certificate (it collects it when it asks again); audited."""
    outcome = claims.approve(device_id)
    audit.append([AuditEntry("enrollment.approved", actor=actor, devices=[device_id],
                             detail={"labels": outcome.labels or {},
                                     "device_class": outcome.device_class})])
    return outcome


def reject_enrollment(claims: ClaimStore, audit: AuditLog, device_id: str, reason: str,
                      actor: str) -> Outcome:
    """Refuse the pending request (the device is told ``reason`` when it asks again); audited."""
    outcome = claims.reject(device_id, reason)
    audit.append([AuditEntry("enrollment.rejected", actor=actor, devices=[device_id],
                             detail={"reason": outcome.reason})])
    return outcome
