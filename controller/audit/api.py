"""``GET /audit``: the audit log, newest first, filtered and paged."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from controller.audit.store import AuditLog
from controller.rest import API, MAX_ID


def audit_router(audit_log: AuditLog) -> APIRouter:
    router = APIRouter(prefix=f"{API}/audit", tags=["audit"])

    @router.get("")
    def audit(rollout: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
              device: Annotated[str | None, Query(max_length=128)] = None,
              action: Annotated[str | None, Query(max_length=64)] = None,
              before: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:
        """Newest first. ``next`` is the ``before`` value of the following page (null: no more).
        ``action`` matches a prefix (``rollout.``, ``device.labels``)."""
        return audit_log.page(rollout_id=rollout, device_id=device, action=action,
                                  before=before, limit=limit)

    return router
