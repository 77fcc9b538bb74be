"""Read models for the fleet views: paged device and model lists, device history and errors,
deployment progress. SQL reads over the stores' tables; no writes.

A few thousand devices stay cheap: lists are filtered and paged in SQL first, and the
telemetry aggregates are computed for the devices of one page only. A label selector is applied
in Python over (device id, labels) pairs, which costs one narrow scan of the devices table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from controller.errors import NotFoundError, ValidationError
from controller.fleet.prediction_sums import predictions_count
from controller.fleet.selectors import Selector
from controller.paging import page
from controller.storage.db import Database
from controller.storage.tables import device_history, device_labels, devices, telemetry

IN_CHUNK = 500
SORTS = ("device_id", "-device_id", "last_seen", "-last_seen")


@dataclass(frozen=True)
class DeviceFilter:
    """Which devices a list shows. ``model`` alone matches any version of it."""

    q: str | None = None  # substring of the device id, case-insensitive
    online: bool | None = None
    model: str | None = None
    version: int | None = None
    state: str | None = None
    selector: Selector | None = None
    sort: str = "device_id"
    limit: int | None = None
    offset: int = 0


def parse_model_ref(text: str) -> tuple[str, int | None]:
    """``iris`` or ``iris:2`` -> (name, version or None); ValidationError otherwise."""
    name, sep, version = text.partition(":")
    if not name or (sep and not version.isdigit()) or len(version) > 9:
        raise ValidationError(f"model {text!r} must be NAME or NAME:VERSION, e.g. iris:2")
    return name, int(version) if sep else None


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def load_labels(raw: str | None) -> dict[str, str]:
    try:
        labels = json.loads(raw or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def operator_labels(conn: sa.Connection, ids: Sequence[str] | None) -> dict[str, dict[str, str]]:
    """Labels an operator set (they override the device's own; controller/fleet/device_registry.py)."""
    out: dict[str, dict[str, str]] = {}
    q = sa.select(device_labels.c.device_id, device_labels.c.key, device_labels.c.value)
    chunks = [q] if ids is None else [q.where(device_labels.c.device_id.in_(ids[i:i + IN_CHUNK]))
                                      for i in range(0, len(ids), IN_CHUNK)]
    for chunk in chunks:
        for r in conn.execute(chunk):
            out.setdefault(r.device_id, {})[r.key] = r.value
    return out


def device_out(m: Any, labels: Mapping[str, str]) -> dict[str, Any]:
    """A device row as the API shows it: the same fields as ``FleetStore.list_devices`` (every
    column of ``devices``, progress as a pair, labels decoded) plus the telemetry counts."""
    hidden = {"labels_json", "progress_received", "progress_total", "predictions", "feedback",
              "hits"}
    out = {k: v for k, v in m.items() if k not in hidden}
    received, total = m["progress_received"], m["progress_total"]
    feedback = int(m["feedback"] or 0)
    out.update(
        online=bool(m["online"]),
        labels=dict(labels),
        progress=[received, total] if total is not None else None,
        dropped_total=int(m["dropped_total"] or 0),
        predictions=int(m["predictions"] or 0),
        feedback=feedback,
        accuracy=int(m["hits"] or 0) / feedback if feedback else None,
    )
    return out


class FleetViews:
    """The queries behind the dashboard's lists and the CLI's views."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- devices ---------------------------------------------------------------------------------

    def list_devices(self, f: DeviceFilter) -> tuple[list[dict[str, Any]], int]:
        """One page of devices matching ``f`` and how many match in all."""
        d = devices.c
        where: list[Any] = []
        if f.q:
            where.append(sa.func.lower(d.device_id).like(_like(f.q), escape="\\"))
        if f.online is not None:
            where.append(d.online == (sa.true() if f.online else sa.false()))
        if f.model is not None:
            where.append(d.active_model == f.model)
        if f.version is not None:
            where.append(d.active_version == f.version)
        if f.state is not None:
            where.append(d.state == f.state)
        orders: dict[str, list[Any]] = {"device_id": [d.device_id], "-device_id": [d.device_id.desc()],
                 "last_seen": [d.last_seen, d.device_id],
                 "-last_seen": [d.last_seen.desc(), d.device_id]}
        order = orders[f.sort]
        with self.db.read() as conn:
            if f.selector is None or f.selector.matches_all:
                total = int(conn.execute(sa.select(sa.func.count()).select_from(devices)
                                         .where(*where)).scalar_one())
                q = sa.select(d.device_id).where(*where).order_by(*order).offset(f.offset)
                if f.limit is not None:
                    q = q.limit(f.limit)
                ids = list(conn.execute(q).scalars())
            else:
                rows = conn.execute(sa.select(d.device_id, d.labels_json).where(*where)
                                    .order_by(*order)).all()
                overrides = operator_labels(conn, None)
                selector = f.selector
                matching = [r.device_id for r in rows
                            if selector.matches({**load_labels(r.labels_json),
                                                 **overrides.get(r.device_id, {})})]
                total = len(matching)
                ids = page(matching, f.limit, f.offset)
            return self._rows(conn, ids), total

    def get_device(self, device_id: str) -> dict[str, Any]:
        with self.db.read() as conn:
            rows = self._rows(conn, [device_id])
        if not rows:
            raise NotFoundError("device", device_id)
        return rows[0]

    def _rows(self, conn: sa.Connection, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Full rows for ``ids`` in that order, with all-time telemetry counts."""
        if not ids:
            return []
        t = telemetry.c
        found: dict[str, dict[str, Any]] = {}
        overrides = operator_labels(conn, ids)
        for i in range(0, len(ids), IN_CHUNK):
            chunk = list(ids[i:i + IN_CHUNK])
            agg = (sa.select(
                t.device_id,
                predictions_count().label("predictions"),
                sa.func.count(t.correct).label("feedback"),
                sa.func.sum(sa.case((t.correct == sa.true(), 1), else_=0)).label("hits"))
                .where(t.device_id.in_(chunk)).group_by(t.device_id).subquery())
            q = (sa.select(devices, agg.c.predictions, agg.c.feedback, agg.c.hits)
                 .select_from(devices.outerjoin(agg, agg.c.device_id == devices.c.device_id))
                 .where(devices.c.device_id.in_(chunk)))
            for r in conn.execute(q):
                m = r._mapping
                labels = {**load_labels(m["labels_json"]), **overrides.get(m["device_id"], {})}
                found[m["device_id"]] = device_out(m, labels)
        return [found[i] for i in ids if i in found]

    def device_history(self, device_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """Changes of the device's update state and active version, newest first."""
        h = device_history.c
        with self.db.read() as conn:
            self._require_device(conn, device_id)
            rows = conn.execute(
                sa.select(h.ts, h.recorded_at, h.state, h.model, h.version, h.sha256,
                          h.target_model, h.target_version, h.deployment_id, h.error)
                .where(h.device_id == device_id).order_by(h.id.desc()).limit(limit))
            return [dict(r._mapping) for r in rows]

    def device_errors(self, device_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """The latest errors, newest first: inference errors from telemetry (``source``
        "inference") and failed updates from the version history (``source`` "update")."""
        t, h = telemetry.c, device_history.c
        with self.db.read() as conn:
            self._require_device(conn, device_id)
            inference = conn.execute(
                sa.select(t.ts, t.model, t.version, t.payload_json)
                .where(t.device_id == device_id, t.kind == "error")
                .order_by(t.ts.desc()).limit(limit)).all()
            updates = conn.execute(
                sa.select(h.ts, h.target_model, h.target_version, h.model, h.version, h.error)
                .where(h.device_id == device_id, h.error.is_not(None))
                .order_by(h.id.desc()).limit(limit)).all()
        out = []
        for r in inference:
            payload = _json_object(r.payload_json or "{}")
            out.append({"ts": r.ts, "source": "inference", "model": r.model, "version": r.version,
                        "message": str(payload.get("reason") or payload.get("detail") or
                                       "error")})
        for u in updates:
            out.append({"ts": u.ts, "source": "update", "model": u.target_model or u.model,
                        "version": u.target_version if u.target_model else u.version,
                        "message": u.error})
        out.sort(key=lambda e: e["ts"], reverse=True)
        return out[:limit]

    @staticmethod
    def _require_device(conn: sa.Connection, device_id: str) -> None:
        if conn.execute(sa.select(devices.c.device_id)
                        .where(devices.c.device_id == device_id)).first() is None:
            raise NotFoundError("device", device_id)



def _json_object(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
