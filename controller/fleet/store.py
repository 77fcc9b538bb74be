"""What the controller knows about each device: presence, reported and desired state.

A device is registered on first contact (any message), so the fleet view never depends on a
separate enrolment step. Timestamps only move forward: a late, out-of-order message must not
make a live device look stale.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from controller.errors import ConflictError, NotFoundError
from controller.fleet.prediction_sums import predictions_count
from controller.fleet.versions import ModelVersion
from controller.storage.db import Database
from controller.storage.tables import (
    deployments,
    device_history,
    devices,
    model_versions,
    reported_order,
    telemetry,
)
from edgewise_wire import ModelRef, Reported

_IN_CHUNK = 500  # keep IN (...) lists well under every backend's bind-parameter limit


def touch(db: Database, conn: sa.Connection, device_id: str, ts: float) -> None:
    """Register ``device_id`` if unknown, else advance its last_seen; inside ``conn``'s
    transaction so the telemetry store can do it atomically with its insert."""
    conn.execute(db.insert_ignore(devices).values(device_id=device_id, first_seen=ts, last_seen=ts))
    conn.execute(devices.update()
                 .where(devices.c.device_id == device_id, devices.c.last_seen < ts)
                 .values(last_seen=ts))


def raise_dropped_total(conn: sa.Connection, device_id: str, n: int) -> None:
    """The agent's counter only grows; a replayed old batch must not lower it."""
    conn.execute(devices.update()
                 .where(devices.c.device_id == device_id, devices.c.dropped_total < n)
                 .values(dropped_total=n))


# -- version history -----------------------------------------------------------------
HISTORY_KEEP = 500  # rows kept per device; older ones are pruned as new ones arrive


def record_history(conn: sa.Connection, device_id: str, reported: Reported) -> bool:
    """Append a ``device_history`` row if this report changes the device's update state, its
    active artifact or its error; a repeated report (a retained copy, download progress) adds
    nothing. Runs inside the caller's transaction, before the device row is updated."""
    d = devices.c
    before = conn.execute(sa.select(d.state, d.active_sha256, d.active_version, d.last_error)
                          .where(d.device_id == device_id)).first()
    active = reported.active
    after = (reported.state, active.sha256 if active else None,
             active.version if active else None, reported.last_error)
    if before is not None and tuple(before) == after:
        return False
    target = reported.target
    conn.execute(device_history.insert().values(
        device_id=device_id, ts=reported.ts, recorded_at=time.time(), state=reported.state,
        model=active.model if active else None, version=active.version if active else None,
        sha256=active.sha256 if active else None,
        target_model=target.model if target else None,
        target_version=target.version if target else None,
        deployment_id=reported.deployment_id, error=reported.last_error))
    h = device_history.c
    cutoff = conn.execute(sa.select(h.id).where(h.device_id == device_id)
                          .order_by(h.id.desc()).offset(HISTORY_KEEP).limit(1)).scalar()
    if cutoff is not None:
        conn.execute(device_history.delete().where(h.device_id == device_id, h.id <= cutoff))
    return True


class FleetStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.stale_reports = 0  # reports older than the one applied, not applied

    def touch(self, device_id: str, ts: float) -> None:
        with self.db.write() as conn:
            touch(self.db, conn, device_id, ts)

    def set_presence(self, device_id: str, online: bool, ts: float, agent_version: str = "",
                     device_class: str = "") -> None:
        with self.db.write() as conn:
            touch(self.db, conn, device_id, ts)
            values: dict[str, Any] = {"online": online}
            if agent_version:
                values["agent_version"] = agent_version
            if device_class:
                values["device_class"] = device_class
            conn.execute(devices.update().where(devices.c.device_id == device_id).values(**values))

    def set_reported(self, device_id: str, reported: Reported) -> None:
        active, target = reported.active, reported.target
        received, total = reported.progress if reported.progress else (None, None)
        values: dict[str, Any] = {
            "state": reported.state,
            "active_model": active.model if active else None,
            "active_version": active.version if active else None,
            "active_sha256": active.sha256 if active else None,
            "target_model": target.model if target else None,
            "target_version": target.version if target else None,
            "reported_deployment_id": reported.deployment_id,
            "last_error": reported.last_error,
            "progress_received": received,
            "progress_total": total,
            "labels_json": json.dumps(reported.labels, sort_keys=True),
            # a report without them (an older agent, or no such slot) clears them
            **_slot_values("staged", reported.staged),
            **_slot_values("previous", reported.previous),
        }
        if reported.agent_version:
            values["agent_version"] = reported.agent_version
        if reported.device_class:  # an older agent reports none: the class stays as known
            values["device_class"] = reported.device_class
        update = reported.agent_update or {}
        # an agent outside a launcher reports none: it takes no agent version, nothing to keep
        target, where = update.get("target"), update.get("state")
        values["agent_update_target"] = target[:64] if isinstance(target, str) else None
        values["agent_update_state"] = where[:32] if isinstance(where, str) else None
        with self.db.write() as conn:
            touch(self.db, conn, device_id, reported.ts)
            # replicas of a share group may store two reports out of order; an
            # older report than the one applied is not applied over it
            conn.execute(self.db.insert_ignore(reported_order).values(device_id=device_id,
                                                                      ts=reported.ts))
            newest = conn.execute(reported_order.update().where(
                reported_order.c.device_id == device_id, reported_order.c.ts <= reported.ts)
                .values(ts=reported.ts)).rowcount
            if not newest:
                self.stale_reports += 1
                return
            record_history(conn, device_id, reported)  # before the row changes
            conn.execute(devices.update().where(devices.c.device_id == device_id).values(**values))

    def set_desired(self, device_ids: Sequence[str], model: str | None, version: int | None,
                    deployment_id: str | None) -> int:
        """Record what the devices should run (model None: run nothing); returns how many of
        them exist. Unknown ids are ignored: a rollout targets devices that have reported."""
        updated = 0
        with self.db.write() as conn:
            for i in range(0, len(device_ids), _IN_CHUNK):
                chunk = list(device_ids[i:i + _IN_CHUNK])
                result = conn.execute(
                    devices.update().where(devices.c.device_id.in_(chunk))
                    .values(desired_model=model, desired_version=version,
                            desired_deployment_id=deployment_id))
                updated += result.rowcount
        return updated

    def reported_models(self, device_ids: Sequence[str]
                        ) -> dict[str, tuple[ModelVersion | None, ModelVersion | None]]:
        """``{device: (active, update target)}`` as last reported (whether a desired
        state needs a signed rollback order); devices never heard from are left out."""
        d = devices.c
        out: dict[str, tuple[ModelVersion | None, ModelVersion | None]] = {}
        ids = list(device_ids)
        with self.db.read() as conn:
            for i in range(0, len(ids), _IN_CHUNK):
                for r in conn.execute(sa.select(
                        d.device_id, d.active_model, d.active_version, d.target_model,
                        d.target_version).where(d.device_id.in_(ids[i:i + _IN_CHUNK]))):
                    out[r.device_id] = (_version(r.active_model, r.active_version),
                                        _version(r.target_model, r.target_version))
        return out

    def create_deployment(self, deployment_id: str, model: str, version: int,
                          selector: str | None = None) -> None:
        with self.db.write() as conn:
            known = conn.execute(sa.select(model_versions.c.version).where(
                model_versions.c.model == model, model_versions.c.version == version)).first()
            if known is None:
                raise NotFoundError("model version", f"{model}:{version}")
            try:
                with conn.begin_nested():
                    conn.execute(deployments.insert().values(
                        deployment_id=deployment_id, model=model, version=version,
                        created_at=time.time(), selector=selector))
            except exc.IntegrityError:
                raise ConflictError(f"deployment {deployment_id!r} already exists") from None

    def get_deployment(self, deployment_id: str) -> dict[str, Any]:
        with self.db.read() as conn:
            row = conn.execute(sa.select(deployments).where(
                deployments.c.deployment_id == deployment_id)).first()
        if row is None:
            raise NotFoundError("deployment", deployment_id)
        return dict(row._mapping)

    def list_deployments(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(sa.select(deployments).order_by(deployments.c.created_at))
            return [dict(r._mapping) for r in rows]

    def set_dropped_total(self, device_id: str, n: int) -> None:
        with self.db.write() as conn:
            raise_dropped_total(conn, device_id, n)

    def get(self, device_id: str) -> dict[str, Any]:
        rows = self._query(device_id)
        if not rows:
            raise NotFoundError("device", device_id)
        return rows[0]

    def device_classes(self, device_ids: Sequence[str]) -> dict[str, str]:
        """``{device: its reported class}`` for those of ``device_ids`` whose class is known."""
        d = devices.c
        ids = list(device_ids)
        out: dict[str, str] = {}
        with self.db.read() as conn:
            for i in range(0, len(ids), _IN_CHUNK):
                out.update((r.device_id, r.device_class) for r in conn.execute(sa.select(
                    d.device_id, d.device_class).where(d.device_id.in_(ids[i:i + _IN_CHUNK]),
                                                       d.device_class.is_not(None))))
        return out

    def device_ids(self) -> list[str]:
        """Every registered device, without the telemetry aggregates of :meth:`list_devices`."""
        with self.db.read() as conn:
            return list(conn.execute(sa.select(devices.c.device_id)
                                     .order_by(devices.c.device_id)).scalars())

    def list_devices(self) -> list[dict[str, Any]]:
        return self._query(None)

    def _query(self, device_id: str | None) -> list[dict[str, Any]]:
        """Devices joined with their telemetry aggregates: one query for the whole fleet."""
        t = telemetry.c
        agg = (
            sa.select(
                t.device_id,
                predictions_count().label("predictions"),
                sa.func.count(t.correct).label("feedback"),
                sa.func.sum(sa.case((t.correct == sa.true(), 1), else_=0)).label("hits"),
            )
            .group_by(t.device_id)
        )
        if device_id is not None:
            agg = agg.where(t.device_id == device_id)
        sub = agg.subquery()
        q = (sa.select(devices, sub.c.predictions, sub.c.feedback, sub.c.hits)
             .select_from(devices.outerjoin(sub, sub.c.device_id == devices.c.device_id))
             .order_by(devices.c.device_id))
        if device_id is not None:
            q = q.where(devices.c.device_id == device_id)
        with self.db.read() as conn:
            return [_device_dict(r._mapping) for r in conn.execute(q)]


def _slot_values(slot: str, ref: ModelRef | None) -> dict[str, Any]:
    """The ``{slot}_model/_version/_sha256`` columns of one reported slot (migration 6)."""
    return {f"{slot}_model": ref.model if ref else None,
            f"{slot}_version": ref.version if ref else None,
            f"{slot}_sha256": ref.sha256 if ref else None}


def _version(model: str | None, version: int | None) -> ModelVersion | None:
    return ModelVersion(model, int(version)) if model is not None and version is not None else None


def _device_dict(m: Any) -> dict[str, Any]:
    feedback = int(m["feedback"] or 0)
    received, total = m["progress_received"], m["progress_total"]
    return {
        "device_id": m["device_id"],
        "online": bool(m["online"]),
        "first_seen": m["first_seen"],
        "last_seen": m["last_seen"],
        "labels": json.loads(m["labels_json"] or "{}"),
        "state": m["state"],
        "agent_version": m["agent_version"],
        "device_class": m["device_class"],
        "active_model": m["active_model"],
        "active_version": m["active_version"],
        "active_sha256": m["active_sha256"],
        "target_model": m["target_model"],
        "target_version": m["target_version"],
        "staged_model": m["staged_model"],
        "staged_version": m["staged_version"],
        "staged_sha256": m["staged_sha256"],
        "previous_model": m["previous_model"],
        "previous_version": m["previous_version"],
        "previous_sha256": m["previous_sha256"],
        "reported_deployment_id": m["reported_deployment_id"],
        "desired_model": m["desired_model"],
        "desired_version": m["desired_version"],
        "desired_deployment_id": m["desired_deployment_id"],
        "last_error": m["last_error"],
        "progress": (received, total) if total is not None else None,
        "dropped_total": int(m["dropped_total"]),
        "predictions": int(m["predictions"] or 0),
        "feedback": feedback,
        "accuracy": int(m["hits"] or 0) / feedback if feedback else None,
    }
