"""Health windows, stored once per telemetry record, read back as history, the latest window per
device, the points the health alerts judge, and a model version's resource cost per device.

The telemetry store hands every ``health`` record to :meth:`HealthStore.store_windows` inside the
transaction that stores the batch, so a window is stored exactly when its record is (key:
device, outbox epoch, seq). A record is read with :func:`edgewise_wire.health.parse_health`:
an implausible gauge (negative memory, 1,000 degC) is left out and counted by reason in
:attr:`HealthStore.stats`; a record without a usable window is counted and not stored here (its
raw record stays in the telemetry table). No retention: windows are kept until deleted by hand.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from controller.device_health.rules import HealthPoint
from controller.storage.db import Database
from controller.storage.tables import devices, health_windows
from controller.storage.windows import WindowTable, insert_new_windows
from edgewise_wire.errors import SchemaError
from edgewise_wire.health import HealthRecord, parse_health

log = logging.getLogger("edgewise.controller.health")

_WINDOWS = WindowTable(health_windows, "health window", SchemaError,
                       invalid_stat="health_invalid", stored_stat="health_windows_stored", log=log)

_IN_CHUNK = 500
MAX_HISTORY = 5000  # windows one history call returns at most (the newest)


@dataclass(frozen=True)
class ResourceCost:
    """What serving one model version costs on one device (None: not measured)."""

    session_bytes: float | None
    cpu_ms_per_prediction: float | None
    predictions: int

    def to_dict(self) -> dict[str, Any]:
        return {"session_bytes": self.session_bytes,
                "cpu_ms_per_prediction": self.cpu_ms_per_prediction,
                "predictions": self.predictions}


def _mean(rec: HealthRecord, name: str) -> float | None:
    g = rec.gauges.get(name)
    return g[1] if g else None


def window_row(device_id: str, epoch: int, seq: int, rec: HealthRecord,
               received_at: float) -> dict[str, Any]:
    g = rec.gauges
    return {
        "device_id": device_id, "epoch": epoch, "seq": seq,
        "window_start": rec.start_ts, "window_end": rec.ts,
        "model": rec.model, "version": rec.version,
        "samples": int(rec.scalars.get("samples", 0)),
        "rss_bytes": _mean(rec, "rss_bytes"),
        "rss_max_bytes": g["rss_bytes"][2] if "rss_bytes" in g else None,
        "cpu_percent": _mean(rec, "cpu_percent"),
        "mem_available_bytes": g["mem_available_bytes"][0] if "mem_available_bytes" in g
        else None,
        "load1": _mean(rec, "load1"),
        "disk_free_bytes": g["disk_free_bytes"][0] if "disk_free_bytes" in g else None,
        "disk_total_bytes": rec.scalars.get("disk_total_bytes"),
        "temp_c": g["temp_c"][2] if "temp_c" in g else None,
        "throttled": int(rec.scalars["throttled"]) if "throttled" in rec.scalars else None,
        "outbox_backlog": g["outbox_backlog"][2] if "outbox_backlog" in g else None,
        "rtt_ms": _mean(rec, "rtt_ms"),
        "reconnects": int(rec.scalars["reconnects"]) if "reconnects" in rec.scalars else None,
        "agent_started_ts": rec.scalars.get("agent_started_ts"),
        "uptime_s": rec.scalars.get("uptime_s"),
        "session_bytes": rec.cost.get("session_bytes"),
        "predictions": int(rec.cost["predictions"]) if "predictions" in rec.cost else None,
        "cpu_s": rec.cost.get("cpu_s"),
        "latency_ms": rec.cost.get("latency_ms"),
        "gauges_json": json.dumps({k: list(v) for k, v in g.items()}, separators=(",", ":")),
        "rejected": "; ".join(rec.rejected),
        "received_at": received_at,
    }


class HealthStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.stats: Counter[str] = Counter()

    # -- writing (inside the telemetry store's transaction) -------------------------------------

    def store_windows(self, conn: sa.Connection, device_id: str, epoch: int,
                      records: Sequence[Mapping[str, Any]], received_at: float) -> int:
        """Insert the batch's ``health`` records (idempotent); return how many were new."""

        def row(record: Mapping[str, Any]) -> dict[str, Any]:
            parsed = parse_health(dict(record))
            for reason in parsed.rejected:
                self.stats[f"health_field_rejected: {reason.split(':')[0]}"] += 1
            if parsed.rejected:
                log.info("health window from %s (seq %s): left out %s", device_id,
                         record.get("seq"), "; ".join(parsed.rejected))
            return window_row(device_id, epoch, int(record["seq"]), parsed, received_at)

        return insert_new_windows(self.db, conn, _WINDOWS, device_id, records, row, self.stats)

    # -- reading ---------------------------------------------------------------------------------

    def is_known(self, device_id: str) -> bool:
        with self.db.read() as conn:
            return conn.execute(sa.select(devices.c.device_id)
                                .where(devices.c.device_id == device_id)).first() is not None

    def history(self, device_id: str, since: float, until: float | None = None
                ) -> list[dict[str, Any]]:
        """The device's windows ending in ``[since, until)``, oldest first (the newest
        :data:`MAX_HISTORY` of them)."""
        h = health_windows.c
        q = sa.select(health_windows).where(h.device_id == device_id, h.window_end >= since)
        if until is not None:
            q = q.where(h.window_end < until)
        q = q.order_by(h.window_end.desc()).limit(MAX_HISTORY)
        with self.db.read() as conn:
            rows = [_public(r._mapping) for r in conn.execute(q)]
        rows.reverse()
        return rows

    def latest(self, device_ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Each device's newest window (devices without one are left out)."""
        h = health_windows.c
        newest = (sa.select(h.device_id, sa.func.max(h.window_end).label("end"))
                  .group_by(h.device_id))
        if device_ids is not None:
            newest = newest.where(h.device_id.in_(list(device_ids)))
        sub = newest.subquery()
        q = sa.select(health_windows).join(
            sub, sa.and_(h.device_id == sub.c.device_id, h.window_end == sub.c.end))
        with self.db.read() as conn:
            return {r.device_id: _public(r._mapping) for r in conn.execute(q)}

    def points(self, since: float, device_ids: Sequence[str] | None = None
               ) -> dict[str, list[HealthPoint]]:
        """The windows ending at or after ``since`` per device, oldest first."""
        h = health_windows.c
        q = (sa.select(h.device_id, h.window_start, h.window_end, h.model, h.version,
                       h.rss_bytes, h.disk_free_bytes, h.disk_total_bytes, h.temp_c,
                       h.throttled, h.outbox_backlog, h.reconnects, h.agent_started_ts)
             .where(h.window_end >= since).order_by(h.device_id, h.window_end))
        out: dict[str, list[HealthPoint]] = defaultdict(list)
        with self.db.read() as conn:
            chunks = [None] if device_ids is None else [
                list(device_ids)[i:i + _IN_CHUNK] for i in range(0, len(device_ids), _IN_CHUNK)]
            for chunk in chunks:
                sel = q if chunk is None else q.where(h.device_id.in_(chunk))
                for r in conn.execute(sel):
                    out[r.device_id].append(HealthPoint(
                        r.device_id, r.window_start, r.window_end, r.model, r.version,
                        r.rss_bytes, r.disk_free_bytes, r.disk_total_bytes, r.temp_c,
                        r.throttled, r.outbox_backlog, r.reconnects, r.agent_started_ts))
        return dict(out)

    def version_costs(self, device_ids: Sequence[str], model: str, version: int,
                      since: float) -> dict[str, ResourceCost]:
        """What ``model:version`` cost on each device in its windows ending since ``since``:
        the largest session memory measured at activation, and process CPU time per
        prediction over all those windows. Devices without such a window are left out."""
        h = health_windows.c
        out: dict[str, ResourceCost] = {}
        ids = list(device_ids)
        with self.db.read() as conn:
            for i in range(0, len(ids), _IN_CHUNK):
                q = (sa.select(h.device_id, sa.func.max(h.session_bytes).label("session"),
                               sa.func.sum(h.cpu_s).label("cpu"),
                               sa.func.sum(h.predictions).label("n"))
                     .where(h.model == model, h.version == version, h.window_end >= since,
                            h.device_id.in_(ids[i:i + _IN_CHUNK]))
                     .group_by(h.device_id))
                for r in conn.execute(q):
                    out[r.device_id] = _cost(r.session, r.cpu, r.n)
        return out

    def baseline_costs(self, device_ids: Sequence[str], model: str, version: int,
                       since: float, until: float) -> dict[str, ResourceCost]:
        """What each device's version before ``model:version`` cost: the version of its
        newest window ending in ``[since, until]`` that served another model version, over its
        windows in that range. Devices that served nothing else there are left out."""
        h = health_windows.c
        out: dict[str, ResourceCost] = {}
        ids = list(device_ids)
        other = sa.and_(h.model.is_not(None), h.version.is_not(None),
                        sa.or_(h.model != model, h.version != version),
                        h.window_end >= since, h.window_end <= until)
        with self.db.read() as conn:
            for i in range(0, len(ids), _IN_CHUNK):
                chunk = ids[i:i + _IN_CHUNK]
                newest = (sa.select(h.device_id, sa.func.max(h.window_end).label("end"))
                          .where(other, h.device_id.in_(chunk)).group_by(h.device_id)
                          .subquery())
                served = conn.execute(sa.select(h.device_id, h.model, h.version).join(
                    newest, sa.and_(h.device_id == newest.c.device_id,
                                    h.window_end == newest.c.end))).all()
                for device_id, prev_model, prev_version in served:
                    r = conn.execute(
                        sa.select(sa.func.max(h.session_bytes).label("session"),
                                  sa.func.sum(h.cpu_s).label("cpu"),
                                  sa.func.sum(h.predictions).label("n"))
                        .where(h.device_id == device_id, h.model == prev_model,
                               h.version == prev_version, h.window_end >= since,
                               h.window_end <= until)).one()
                    out[device_id] = _cost(r.session, r.cpu, r.n)
        return out


def _cost(session: Any, cpu_s: Any, n: Any) -> ResourceCost:
    count = int(n or 0)
    cpu = float(cpu_s) * 1000.0 / count if count and cpu_s is not None else None
    return ResourceCost(float(session) if session is not None else None, cpu, count)


def _public(row: Any) -> dict[str, Any]:
    """A stored window as the API shows it (a row mapping)."""
    out = {k: v for k, v in row.items() if k not in ("gauges_json", "epoch", "seq")}
    out["gauges"] = json.loads(row["gauges_json"])
    return out
