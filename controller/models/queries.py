"""Read models of the model views: the paged model list, and where each version of a model runs
(devices running it, installing it, failed on it). SQL reads; no writes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from controller.models.registry import ModelRegistry
from controller.paging import page
from controller.storage.db import Database
from controller.storage.tables import devices
from edgewise_wire.update_states import FAILED_UPDATE_STATES, IN_PROGRESS_STATES, gave_up_on


class ModelViews:
    def __init__(self, db: Database, registry: ModelRegistry) -> None:
        self.db = db
        self.registry = registry

    def list_models(self, q: str | None, limit: int | None,
                    offset: int) -> tuple[list[dict[str, Any]], int]:
        rows = self.registry.list_models()
        if q:
            rows = [r for r in rows if q.lower() in r["name"].lower()]
        return page(rows, limit, offset), len(rows)


    def version_placement(self, model: str) -> dict[int, dict[str, Any]]:
        """Per version of ``model``: devices running it (and online), targeting it, failed."""
        d = devices.c
        out: dict[int, dict[str, Any]] = {}

        def slot(version: int) -> dict[str, Any]:
            return out.setdefault(version, {"running": 0, "online": 0, "desired": 0,
                                            "installing": 0, "failed": 0})

        with self.db.read() as conn:
            for r in conn.execute(
                    sa.select(d.active_version, d.online, sa.func.count().label("n"))
                    .where(d.active_model == model, d.active_version.is_not(None))
                    .group_by(d.active_version, d.online)):
                slot(int(r.active_version))["running"] += int(r.n)
                if r.online:
                    slot(int(r.active_version))["online"] += int(r.n)
            for r in conn.execute(
                    sa.select(d.desired_version, sa.func.count().label("n"))
                    .where(d.desired_model == model, d.desired_version.is_not(None))
                    .group_by(d.desired_version)):
                slot(int(r.desired_version))["desired"] += int(r.n)
            # a device rolled back onto the version it targets is not a failure
            for r in conn.execute(
                    sa.select(d.target_version, d.state, d.active_model, d.active_version,
                              sa.func.count().label("n"))
                    .where(d.target_model == model, d.target_version.is_not(None),
                           d.state.in_(sorted(s.value for s in FAILED_UPDATE_STATES | IN_PROGRESS_STATES)))
                    .group_by(d.target_version, d.state, d.active_model, d.active_version)):
                version = int(r.target_version)
                if r.state in IN_PROGRESS_STATES:
                    slot(version)["installing"] += int(r.n)
                elif gave_up_on(r.state, (r.active_model, r.active_version), (model, version)):
                    slot(version)["failed"] += int(r.n)
        return out
