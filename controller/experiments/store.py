"""Experiments and their windows in the database (tables ``experiments`` and
``experiment_windows``, migration 0011).

:meth:`ExperimentStore.store_windows` is the telemetry store's sink for ``experiment`` records:
it runs inside the telemetry transaction, so a window is stored exactly when its telemetry
record is (once per device, epoch and seq); a malformed one is counted and logged, not stored.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from controller.audit.store import AuditEntry, write_audit
from controller.errors import NotFoundError
from controller.storage.db import Database
from controller.storage.tables import experiment_windows, experiments
from controller.storage.windows import WindowTable, insert_new_windows
from edgewise_wire.errors import SchemaError
from edgewise_wire.experiments import validate_window

log = logging.getLogger("edgewise.controller.experiments")

_WINDOWS = WindowTable(experiment_windows, "experiment window", SchemaError,
                       invalid_stat="experiment_window_invalid",
                       stored_stat="experiment_windows_stored", log=log)

RUNNING, STOPPED, PROMOTED = "running", "stopped", "promoted"


@dataclass(frozen=True)
class ExperimentRecord:
    experiment_id: str
    name: str
    mode: str
    model: str
    candidate_version: int
    control_version: int
    spec: dict[str, Any]
    arms: dict[str, str]  # device -> "candidate" | "control" | "both" (shadow)
    status: str
    verdict: str
    created_at: float
    created_by: str
    stopped_at: float | None
    signed_at: float
    rollout_id: int | None


class ExperimentStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.stats: Counter[str] = Counter()

    # -- the telemetry sink ----------------------------------------------------------------

    def store_windows(self, conn: sa.Connection, device_id: str, epoch: int,
                      records: Sequence[Mapping[str, Any]], received_at: float) -> int:
        """Insert the batch's ``experiment`` records (idempotent); return how many were new."""

        def row(record: Mapping[str, Any]) -> dict[str, Any]:
            validate_window(dict(record))
            return {"device_id": device_id, "epoch": epoch, "seq": int(record["seq"]),
                    "experiment_id": record["experiment_id"], "window_end": float(record["ts"]),
                    "record_json": json.dumps(dict(record)), "received_at": received_at}

        return insert_new_windows(self.db, conn, _WINDOWS, device_id, records, row, self.stats)

    # -- experiments ---------------------------------------------------------------------------

    def create(self, record: ExperimentRecord, audit: Sequence[AuditEntry]) -> None:
        with self.db.write() as conn:
            conn.execute(experiments.insert().values(
                experiment_id=record.experiment_id, name=record.name, mode=record.mode,
                model=record.model, candidate_version=record.candidate_version,
                control_version=record.control_version, spec_json=json.dumps(record.spec),
                arms_json=json.dumps(record.arms), status=record.status,
                verdict=record.verdict, created_at=record.created_at,
                created_by=record.created_by, stopped_at=record.stopped_at,
                signed_at=record.signed_at, rollout_id=record.rollout_id))
            write_audit(conn, record.created_at, audit)

    def update(self, experiment_id: str, audit: Sequence[AuditEntry] = (),
               now: float | None = None, **values: Any) -> None:
        with self.db.write() as conn:
            done = conn.execute(experiments.update()
                                .where(experiments.c.experiment_id == experiment_id)
                                .values(**values))
            if done.rowcount == 0:
                raise NotFoundError("experiment", experiment_id)
            if audit:
                write_audit(conn, now if now is not None else 0.0, audit)

    def get(self, experiment_id: str) -> ExperimentRecord:
        with self.db.read() as conn:
            row = conn.execute(sa.select(experiments)
                               .where(experiments.c.experiment_id == experiment_id)).first()
        if row is None:
            raise NotFoundError("experiment", experiment_id)
        return _record(row)

    def query(self, status: str | None = None, limit: int = 100) -> list[ExperimentRecord]:
        q = sa.select(experiments).order_by(experiments.c.created_at.desc()).limit(limit)
        if status is not None:
            q = q.where(experiments.c.status == status)
        with self.db.read() as conn:
            return [_record(r) for r in conn.execute(q)]

    def windows(self, experiment_id: str) -> list[tuple[str, dict[str, Any]]]:
        """(device, record) of every window of the experiment, oldest first."""
        q = (sa.select(experiment_windows.c.device_id, experiment_windows.c.record_json)
             .where(experiment_windows.c.experiment_id == experiment_id)
             .order_by(experiment_windows.c.window_end))
        with self.db.read() as conn:
            return [(d, json.loads(j)) for d, j in conn.execute(q)]


def _record(row: Any) -> ExperimentRecord:
    m = row._mapping
    return ExperimentRecord(
        m["experiment_id"], m["name"], m["mode"], m["model"], int(m["candidate_version"]),
        int(m["control_version"]), json.loads(m["spec_json"]), json.loads(m["arms_json"]),
        m["status"], m["verdict"], float(m["created_at"]), m["created_by"],
        float(m["stopped_at"]) if m["stopped_at"] is not None else None,
        float(m["signed_at"]), int(m["rollout_id"]) if m["rollout_id"] is not None else None)
