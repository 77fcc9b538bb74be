"""Runs of the continuous-training hook in the controller database: started, finished, with
what they produced; the last start of a kind on a model is the cool-down's reference."""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

from controller.storage.db import Database
from controller.storage.tables import retrain_runs

RUNNING = "running"


class RetrainRuns:
    def __init__(self, db: Database) -> None:
        self.db = db

    def start(self, kind: str, model: str, version: int | None, action: str,
                      context: dict[str, Any]) -> int:
        with self.db.write() as conn:
            result = conn.execute(retrain_runs.insert().values(
                started_at=time.time(), kind=kind, model=model, version=version, action=action,
                status=RUNNING, detail="", context_json=json.dumps(context, sort_keys=True))
                .returning(retrain_runs.c.id))
            return int(result.scalar_one())

    def finish(self, run_id: int, status: str, detail: str,
                       new_version: int | None = None,
                       context: dict[str, Any] | None = None) -> None:
        values: dict[str, Any] = {"finished_at": time.time(), "status": status,
                                  "detail": detail[:4000], "new_version": new_version}
        if context is not None:
            values["context_json"] = json.dumps(context, sort_keys=True, default=str)
        with self.db.write() as conn:
            conn.execute(retrain_runs.update().where(retrain_runs.c.id == run_id).values(**values))

    def last_started(self, kind: str, model: str) -> float | None:
        """When a retraining for this alert kind and model last started (for the cool-down)."""
        q = sa.select(sa.func.max(retrain_runs.c.started_at)).where(
            retrain_runs.c.kind == kind, retrain_runs.c.model == model)
        with self.db.read() as conn:
            value = conn.execute(q).scalar()
        return float(value) if value is not None else None

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        q = sa.select(retrain_runs).order_by(retrain_runs.c.id.desc()).limit(limit)
        with self.db.read() as conn:
            return [{**{k: v for k, v in r._mapping.items() if k != "context_json"},
                     "context": json.loads(r.context_json)} for r in conn.execute(q)]
