"""Read models of deployments: how far each got (devices active, installing, failed, waiting)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from controller.fleet.store import FleetStore
from controller.paging import page
from controller.storage.db import Database
from controller.storage.tables import devices
from edgewise_wire.update_states import IN_PROGRESS_STATES, gave_up_on, runs


class DeploymentViews:
    def __init__(self, db: Database, fleet: FleetStore) -> None:
        self.db = db
        self.fleet = fleet

    def deployment_progress(self, deployment_id: str, failed_limit: int = 20) -> dict[str, Any]:
        """How far a deployment got: its devices by outcome, and the failed ones' errors."""
        dep = self.fleet.get_deployment(deployment_id)
        d = devices.c
        counts = {"targeted": 0, "active": 0, "installing": 0, "failed": 0, "waiting": 0,
                  "offline": 0}
        failed: list[dict[str, Any]] = []
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(d.device_id, d.online, d.state, d.active_model, d.active_version,
                          d.target_model, d.target_version, d.last_error)
                .where(d.desired_deployment_id == deployment_id).order_by(d.device_id))
            for r in rows:
                counts["targeted"] += 1
                counts["offline"] += int(not r.online)
                targets_it = r.target_model == dep["model"] and r.target_version == dep["version"]
                wanted = (dep["model"], dep["version"])
                active = (r.active_model, r.active_version)
                if runs(r.state, active, wanted):  # committed (or rolled back onto it)
                    counts["active"] += 1
                elif targets_it and gave_up_on(r.state, active, wanted):
                    counts["failed"] += 1
                    if len(failed) < failed_limit:
                        failed.append({"device_id": r.device_id, "error": r.last_error})
                elif targets_it and r.state in IN_PROGRESS_STATES:
                    counts["installing"] += 1
                else:
                    counts["waiting"] += 1
        done = counts["active"] + counts["failed"]
        return {**dep, **counts, "finished": counts["targeted"] > 0 and done == counts["targeted"],
                "failed_devices": failed}


    def list_deployments(self, limit: int | None, offset: int,
                         newest_first: bool = False) -> tuple[list[dict[str, Any]], int]:
        """Deployments in order of creation, each with its progress counts."""
        rows = self.fleet.list_deployments()
        if newest_first:
            rows.reverse()
        return ([self.deployment_progress(r["deployment_id"], failed_limit=0)
                 for r in page(rows, limit, offset)], len(rows))
