"""Telemetry records from the agents' outboxes, stored exactly once per (device, epoch, seq).

The agent resends a batch until it is acknowledged, so the same records arrive more than once
(and batches overlap after a reconnect). Records are inserted with ON CONFLICT DO NOTHING, many
batches in one transaction (:meth:`TelemetryStore.store_group`, the bridge's group commit: SQLite
``executemany``, PostgreSQL ``COPY`` into a staging table then one INSERT ... SELECT); only once
that commits may the controller send the Acks. The epoch identifies
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

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from controller.errors import NotFoundError, StorageError, ValidationError
from controller.fleet.ingest_wire import TELEMETRY_COLUMNS, DecodedBatch, Row, rows_of
from controller.fleet.prediction_sums import latency_count, latency_sum, predictions_count
from controller.storage.db import Database
from controller.storage.tables import devices, telemetry
from edgewise_wire import TelemetryBatch
from edgewise_wire.errors import SchemaError

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
        Also registers the device and raises its dropped_total, in the same transaction.
        Every record must be good: one that is not refuses the whole batch (ValidationError
        naming it); the MQTT ingest checks records one by one (:mod:`.ingest_wire`)."""
        try:
            decoded = rows_of(device_id, batch, received_at)
        except SchemaError as exc:
            raise ValidationError(str(exc)) from None
        return self.store_group([decoded])

    def store_group(self, batches: Sequence[DecodedBatch]) -> int:
        """Store many decoded batches (of any devices) in one transaction: the group commit of
        the MQTT ingest. Registers the devices and raises their dropped_total, inserts every
        row once per (device, epoch, seq) and hands window records to the sinks; returns how
        many rows were new. Nothing is stored if anything fails."""
        rows = [row for b in batches for row in b.rows]
        with self.db.write() as conn:
            _register_devices(conn, batches)
            inserted = insert_rows(conn, rows) if rows else 0
            for b in batches:
                if b.windows and self.windows is not None:
                    self.windows(conn, b.device_id, b.epoch, b.windows, b.received_at)
                if b.health and self.health is not None:
                    self.health(conn, b.device_id, b.epoch, b.health, b.received_at)
                if b.experiments and self.experiments is not None:
                    self.experiments(conn, b.device_id, b.epoch, b.experiments, b.received_at)
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
            predictions_count().label("predictions"),
            sa.func.count(sa.case((t.kind == "feedback", 1))).label("feedback_records"),
            sa.func.count(sa.case((t.kind == "error", 1))).label("errors"),
            sa.func.count(t.correct).label("labelled"),
            sa.func.sum(sa.case((t.correct == sa.true(), 1), else_=0)).label("hits"),
            latency_sum().label("latency_sum"),
            latency_count().label("latency_n"),
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
        latency = float(m["latency_sum"]) / int(m["latency_n"]) if m["latency_n"] else None
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


def device_marks(batches: Sequence[DecodedBatch]) -> list[tuple[str, float, int, float]]:
    """(device id, received at, dropped_total, received at) per device of a group: the latest
    receipt and the highest dropped_total among its batches, in device order (two replicas
    committing overlapping groups then lock the device rows in the same order and cannot
    deadlock). Pure: the parameters of :data:`_SQLITE_TOUCH` / :data:`_PG_TOUCH`."""
    seen: dict[str, tuple[float, int]] = {}
    for b in batches:
        at, dropped = seen.get(b.device_id, (b.received_at, b.dropped_total))
        seen[b.device_id] = (max(at, b.received_at), max(dropped, b.dropped_total))
    return [(k, at, dropped, at) for k, (at, dropped) in sorted(seen.items())]


# Register each device of a group, or advance its last_seen and raise its dropped_total: one
# statement per group (executemany), where three SQLAlchemy statements cost a third of a
# one-message group's storage CPU. A row that would not change is not written.
_TOUCH = ("INSERT INTO devices (device_id, first_seen, dropped_total, last_seen) "
          "VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (device_id) DO UPDATE SET "
          "last_seen = {max}(devices.last_seen, excluded.last_seen), "
          "dropped_total = {max}(devices.dropped_total, excluded.dropped_total) "
          "WHERE devices.last_seen < excluded.last_seen "
          "OR devices.dropped_total < excluded.dropped_total")
_SQLITE_TOUCH = _TOUCH.format(p="?", max="max")
_PG_TOUCH = _TOUCH.format(p="%s", max="GREATEST")


def _register_devices(conn: sa.Connection, batches: Sequence[DecodedBatch]) -> None:
    """touch() and raise_dropped_total() for every device of a group, in one statement."""
    dialect = conn.dialect.name
    sql = _SQLITE_TOUCH if dialect == "sqlite" else _PG_TOUCH if dialect == "postgresql" \
        else None
    if sql is None:
        raise StorageError(f"unsupported database dialect {dialect!r}")
    raw: Any = conn.connection.driver_connection
    with _driver_errors():
        cur = raw.cursor()
        try:
            cur.executemany(sql, device_marks(batches))
        finally:
            cur.close()


_COLUMNS = ", ".join(TELEMETRY_COLUMNS)
_SQLITE_INSERT = (f"INSERT INTO telemetry ({_COLUMNS}) VALUES "
                  f"({', '.join('?' * len(TELEMETRY_COLUMNS))}) ON CONFLICT DO NOTHING")
# a staging table per session, emptied at every commit: COPY cannot skip duplicates itself
_PG_STAGE = ("CREATE TEMP TABLE IF NOT EXISTS telemetry_stage "
             "(LIKE telemetry INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
_PG_COPY = f"COPY telemetry_stage ({_COLUMNS}) FROM STDIN"
_PG_COPY_DIRECT = f"COPY telemetry ({_COLUMNS}) FROM STDIN"
# in key order: two replicas inserting overlapping groups take the key locks in the same order
_PG_MERGE = (f"INSERT INTO telemetry ({_COLUMNS}) SELECT {_COLUMNS} FROM telemetry_stage "
             "ORDER BY device_id, epoch, seq ON CONFLICT DO NOTHING")


def insert_rows(conn: sa.Connection, rows: Sequence[Row]) -> int:
    """Insert telemetry rows (in :data:`TELEMETRY_COLUMNS` order) inside ``conn``'s
    transaction, each (device, epoch, seq) once; return how many were new. SQLite:
    ``executemany`` of one prepared INSERT ... ON CONFLICT DO NOTHING; PostgreSQL: COPY into
    the table under a savepoint, and if a key is already there (a resent batch), COPY into a
    temporary staging table instead, then one INSERT ... SELECT ... ON CONFLICT DO NOTHING."""
    raw: Any = conn.connection.driver_connection
    with _driver_errors():
        return _insert_rows(conn.dialect.name, raw, rows)


@contextmanager
def _driver_errors() -> Iterator[None]:
    """The driver's own errors (the statements here bypass SQLAlchemy) as the controller's: a
    value the database refuses is the data's fault; anything else is the database's."""
    try:
        yield
    except OverflowError as e:  # a Python int past what the driver binds
        raise ValidationError(f"a value is out of the database's range: {e}") from None
    except Exception as e:
        if type(e).__module__.split(".")[0] not in ("sqlite3", "psycopg"):
            raise
        if {c.__name__ for c in type(e).__mro__} & {"DataError", "IntegrityError"}:
            raise ValidationError(f"the database refused a row of the telemetry group: {e}") from None
        raise StorageError(f"database error: {e!r}") from e


def _key(row: Row) -> tuple[str, int, int]:
    return row[0], row[1], row[2]


def _copy(cur: Any, sql: str, rows: Sequence[Row]) -> None:
    with cur.copy(sql) as copy:
        write = copy.write_row
        for row in rows:
            write(row)


def _insert_rows(dialect: str, raw: Any, rows: Sequence[Row]) -> int:
    if dialect == "sqlite":
        cur = raw.cursor()
        try:
            cur.executemany(_SQLITE_INSERT, rows)
            return int(cur.rowcount)
        finally:
            cur.close()
    if dialect == "postgresql":
        import psycopg  # the PostgreSQL driver: present wherever a PostgreSQL URL is used

        # in key order: two replicas writing overlapping groups lock the keys in the same order
        ordered = sorted(rows, key=_key)
        with raw.cursor() as cur:
            # most groups hold no record already stored: COPY straight into the table, and
            # only if a key is there already (a resent batch) take the staging table's way
            cur.execute("SAVEPOINT ew_copy")
            try:
                _copy(cur, _PG_COPY_DIRECT, ordered)
            except psycopg.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT ew_copy")
            else:
                cur.execute("RELEASE SAVEPOINT ew_copy")
                return len(ordered)
            cur.execute(_PG_STAGE)
            _copy(cur, _PG_COPY, ordered)
            cur.execute(_PG_MERGE)
            return int(cur.rowcount)
    raise StorageError(f"unsupported database dialect {dialect!r}")
