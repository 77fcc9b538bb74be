"""Telemetry records from the agents' outboxes, stored exactly once per (device, epoch, seq).

The agent resends a batch until it is acknowledged, so the same records arrive more than once
(and batches overlap after a reconnect). Each record is inserted with ON CONFLICT DO NOTHING in
one transaction; only once that commits may the controller send the Ack. The epoch identifies
one outbox file: a replaced outbox (moved aside as corrupt, device re-provisioned) starts its
seq at 1 again under a new epoch, and those records are new, not replays.

``metrics`` records (window summaries) are handed, in the same transaction, to the
:data:`WindowSink` the store was given (the monitoring feature's
:func:`controller.monitoring.metrics_store.insert_windows`), so a window is stored exactly when
its telemetry record is. ``health`` records (device health windows) go the same way to the
``health`` sink (:meth:`controller.device_health.store.HealthStore.store_windows`), and
``experiment`` records to the ``experiments`` sink
(:meth:`controller.experiments.store.ExperimentStore.store_windows`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from controller.errors import NotFoundError, ValidationError
from controller.fleet.store import raise_dropped_total, touch
from controller.storage.db import Database
from controller.storage.tables import devices, telemetry
from edgewise_wire import TelemetryBatch

# (connection, device id, epoch, window records, received at): stores metrics windows inside the
# caller's transaction
WindowSink = Callable[[sa.Connection, str, int, Sequence[dict[str, Any]], float], object]


class TelemetryStore:
    def __init__(self, db: Database, windows: WindowSink | None = None,
                 health: WindowSink | None = None,
                 experiments: WindowSink | None = None) -> None:
        self.db = db
        self.windows = windows
        self.health = health
        self.experiments = experiments

    def store_batch(self, device_id: str, batch: TelemetryBatch, received_at: float) -> int:
        """Store the batch's records; return how many were new (0 for a replayed batch).
        Also registers the device and raises its dropped_total, in the same transaction."""
        rows = [_row(device_id, r, received_at, i, batch.epoch)
                for i, r in enumerate(batch.records)]
        stmt = self.db.insert_ignore(telemetry).returning(telemetry.c.seq)
        windows = [r for r in batch.records if r.get("kind") == "metrics"]
        health = [r for r in batch.records if r.get("kind") == "health"]
        trials = [r for r in batch.records if r.get("kind") == "experiment"]
        with self.db.write() as conn:
            touch(self.db, conn, device_id, received_at)
            raise_dropped_total(conn, device_id, batch.dropped_total)
            if not rows:
                return 0
            # executemany; RETURNING yields only the rows that were not already there.
            inserted = len(conn.execute(stmt, rows).all())
            if windows and self.windows is not None:
                self.windows(conn, device_id, batch.epoch, windows, received_at)
            if health and self.health is not None:
                self.health(conn, device_id, batch.epoch, health, received_at)
            if trials and self.experiments is not None:
                self.experiments(conn, device_id, batch.epoch, trials, received_at)
            return inserted

    def count(self, device_id: str | None = None, kind: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(telemetry)
        if device_id is not None:
            q = q.where(telemetry.c.device_id == device_id)
        if kind is not None:
            q = q.where(telemetry.c.kind == kind)
        with self.db.read() as conn:
            return int(conn.execute(q).scalar_one())

    def seqs(self, device_id: str) -> list[int]:
        """All stored seq numbers of a device, ascending: what exactly-once tests compare."""
        q = (sa.select(telemetry.c.seq).where(telemetry.c.device_id == device_id)
             .order_by(telemetry.c.seq))
        with self.db.read() as conn:
            return [int(s) for s in conn.execute(q).scalars()]

    def keys(self, device_id: str) -> list[tuple[int, int]]:
        """All stored (epoch, seq) keys of a device, ascending."""
        q = (sa.select(telemetry.c.epoch, telemetry.c.seq)
             .where(telemetry.c.device_id == device_id)
             .order_by(telemetry.c.epoch, telemetry.c.seq))
        with self.db.read() as conn:
            return [(int(e), int(s)) for e, s in conn.execute(q)]

    def device_summary(self, device_id: str) -> dict[str, Any]:
        """Counts, accuracy and latency of one device's telemetry, in one aggregate query."""
        t = telemetry.c
        q = sa.select(
            sa.func.count().label("records"),
            sa.func.count(sa.case((t.kind == "prediction", 1))).label("predictions"),
            sa.func.count(sa.case((t.kind == "feedback", 1))).label("feedback_records"),
            sa.func.count(sa.case((t.kind == "error", 1))).label("errors"),
            sa.func.count(t.correct).label("labelled"),
            sa.func.sum(sa.case((t.correct == sa.true(), 1), else_=0)).label("hits"),
            sa.func.avg(t.latency_ms).label("mean_latency_ms"),
            sa.func.min(t.seq).label("first_seq"),
            sa.func.max(t.seq).label("last_seq"),
            sa.func.max(t.ts).label("last_ts"),
        ).where(t.device_id == device_id)
        with self.db.read() as conn:
            known = conn.execute(sa.select(devices.c.device_id)
                                 .where(devices.c.device_id == device_id)).first()
            if known is None:
                raise NotFoundError("device", device_id)
            m = conn.execute(q).one()._mapping
        labelled = int(m["labelled"])
        latency = m["mean_latency_ms"]
        return {
            "device_id": device_id,
            "records": int(m["records"]),
            "predictions": int(m["predictions"]),
            "feedback": labelled,
            "feedback_records": int(m["feedback_records"]),
            "errors": int(m["errors"]),
            "accuracy": int(m["hits"] or 0) / labelled if labelled else None,
            "mean_latency_ms": float(latency) if latency is not None else None,
            "first_seq": int(m["first_seq"]) if m["first_seq"] is not None else None,
            "last_seq": int(m["last_seq"]) if m["last_seq"] is not None else None,
            "last_ts": m["last_ts"],
        }


# one compact encoder built once (json.dumps with arguments builds one per call: ~2x slower)
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _row(device_id: str, r: Any, received_at: float, index: int, epoch: int = 0) -> dict[str, Any]:
    """Columns pulled out of one agent record; a field of the wrong type becomes NULL (the
    record itself is kept whole in payload_json), a missing seq/kind/ts is refused."""
    if not isinstance(r, dict):
        raise ValidationError(f"records[{index}] must be an object")
    seq, kind, ts = r.get("seq"), r.get("kind"), r.get("ts")
    if not _is_int(seq) or not isinstance(kind, str) or len(kind) > 32 or _number(ts) is None:
        raise ValidationError(f"records[{index}] needs an integer seq, a string kind and a "
                              f"numeric ts (got seq={seq!r}, kind={kind!r}, ts={ts!r})")
    try:
        payload = _encode(r)
    except (TypeError, ValueError) as e:
        raise ValidationError(f"records[{index}] is not JSON-serialisable: {e}") from e
    return {
        "device_id": device_id,
        "epoch": epoch,
        "seq": seq,
        "kind": kind,
        "ts": _number(ts),
        "model": _str(r.get("model")),
        "version": r.get("version") if _is_int(r.get("version")) else None,
        "prediction_id": _str(r.get("prediction_id")),
        "latency_ms": _number(r.get("latency_ms")),
        "correct": r.get("correct") if isinstance(r.get("correct"), bool) else None,
        "payload_json": payload,
        "received_at": received_at,
    }


def _is_int(v: Any) -> bool:
    # bounded to BIGINT: a larger number would fail the whole insert, not just this column
    return isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and len(v) <= 128 else None
