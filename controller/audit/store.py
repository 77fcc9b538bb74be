"""The audit log: every rollout decision and operator action, appended in the transaction of the
change it records, read back newest first."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from controller.storage.db import Database
from controller.storage.tables import audit_log


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log; ``rollout_id`` None for device and deployment actions."""

    action: str
    actor: str = "controller"
    rollout_id: int | None = None
    devices: Sequence[str] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)



def write_audit(conn: sa.Connection, ts: float, entries: Iterable[AuditEntry],
                rollout_id: int | None = None) -> None:
    """Append entries inside the caller's transaction (``rollout_id`` fills in missing ones)."""
    rows = [{"ts": ts, "actor": e.actor[:128], "action": e.action,
             "rollout_id": e.rollout_id if e.rollout_id is not None else rollout_id,
             "device_ids_json": json.dumps(sorted(e.devices)),
             "detail_json": json.dumps(e.detail, sort_keys=True, default=str)}
            for e in entries]
    if rows:
        conn.execute(audit_log.insert(), rows)



class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def page(self, *, rollout_id: int | None = None, device_id: str | None = None,
              action: str | None = None, before: int | None = None,
              limit: int = 50) -> dict[str, Any]:
        """A page of the audit log, newest first; ``next`` is the ``before`` of the next page."""
        limit = max(1, min(limit, 1000))
        a = audit_log.c
        q = sa.select(audit_log).order_by(a.id.desc()).limit(limit + 1)
        if rollout_id is not None:
            q = q.where(a.rollout_id == rollout_id)
        if device_id is not None:
            q = q.where(a.device_ids_json.contains(json.dumps(device_id), autoescape=True))
        if action is not None:
            q = q.where(a.action.startswith(action, autoescape=True))
        if before is not None:
            q = q.where(a.id < before)
        with self.db.read() as conn:
            rows = conn.execute(q).all()
        entries = [{"id": int(r.id), "ts": r.ts, "actor": r.actor, "action": r.action,
                    "rollout_id": r.rollout_id, "devices": json.loads(r.device_ids_json),
                    "detail": json.loads(r.detail_json)} for r in rows[:limit]]
        more = len(rows) > limit
        return {"entries": entries, "next": entries[-1]["id"] if more and entries else None}

    def append(self, entries: Sequence[AuditEntry], now: float | None = None) -> None:
        with self.db.write() as conn:
            write_audit(conn, time.time() if now is None else now, entries)
