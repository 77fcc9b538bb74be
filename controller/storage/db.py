"""The controller's database: engine set-up, the schema, and registered migrations.

One :class:`Database` wraps a SQLAlchemy Core engine on SQLite (the default, a single file) or
PostgreSQL (several controller replicas). The stores (registry, fleet, telemetry) take a
``Database`` and use :meth:`Database.read` / :meth:`Database.write` so that transaction
semantics that differ between the two backends live here and nowhere else.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from controller.errors import EdgewiseError, StorageError, ValidationError

metadata = sa.MetaData()

schema_migrations = sa.Table(
    "schema_migrations", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)

models = sa.Table(
    "models", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("task", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

model_versions = sa.Table(
    "model_versions", metadata,
    sa.Column("model", sa.String(128), sa.ForeignKey("models.name"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("manifest_json", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

devices = sa.Table(
    "devices", metadata,
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("first_seen", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("online", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("labels_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("state", sa.String(32)),
    sa.Column("active_model", sa.String(128)),
    sa.Column("active_version", sa.Integer),
    sa.Column("active_sha256", sa.String(64)),
    sa.Column("target_model", sa.String(128)),
    sa.Column("target_version", sa.Integer),
    sa.Column("reported_deployment_id", sa.String(128)),
    sa.Column("last_error", sa.Text),
    sa.Column("progress_received", sa.Integer),
    sa.Column("progress_total", sa.Integer),
    sa.Column("agent_version", sa.String(64), nullable=False, server_default=""),
    sa.Column("desired_model", sa.String(128)),
    sa.Column("desired_version", sa.Integer),
    sa.Column("desired_deployment_id", sa.String(128)),
    sa.Column("dropped_total", sa.BigInteger, nullable=False, server_default="0"),
    # migration 6 (issue 4): the agent's standby slot (a verified artifact waiting to be
    # activated) and its previous slot (kept for an instant rollback), as last reported
    sa.Column("staged_model", sa.String(128)),
    sa.Column("staged_version", sa.Integer),
    sa.Column("staged_sha256", sa.String(64)),
    sa.Column("previous_model", sa.String(128)),
    sa.Column("previous_version", sa.Integer),
    sa.Column("previous_sha256", sa.String(64)),
)

deployments = sa.Table(
    "deployments", metadata,
    sa.Column("deployment_id", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("selector", sa.Text),
    sa.ForeignKeyConstraint(["model", "version"], ["model_versions.model", "model_versions.version"]),
)

# Current schema (migration 3): an agent outbox's records are keyed by its epoch too, so a
# replaced outbox whose seq restarts at 1 is not taken for a replay (docs/monitoring.md).
telemetry = sa.Table(
    "telemetry", metadata,
    sa.Column("device_id", sa.String(128), sa.ForeignKey("devices.device_id"), primary_key=True),
    sa.Column("epoch", sa.BigInteger, primary_key=True, autoincrement=False, server_default="0"),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("model", sa.String(128)),
    sa.Column("version", sa.Integer),
    sa.Column("prediction_id", sa.String(128)),
    sa.Column("latency_ms", sa.Float),
    sa.Column("correct", sa.Boolean),
    sa.Column("payload_json", sa.Text, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Index("ix_telemetry_device_kind", "device_id", "kind"),
)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


# -- frozen v1 definitions (issue 6): migration 3 changed ``telemetry``, so migration 1 creates
# the v1 telemetry table from this frozen copy and keeps creating exactly what it always did.
# Likewise ``devices`` since migration 6 (issue 4) added columns to it.
_v1_metadata = sa.MetaData()
_devices_v1 = sa.Table(
    "devices", _v1_metadata,
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("first_seen", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("online", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("labels_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("state", sa.String(32)),
    sa.Column("active_model", sa.String(128)),
    sa.Column("active_version", sa.Integer),
    sa.Column("active_sha256", sa.String(64)),
    sa.Column("target_model", sa.String(128)),
    sa.Column("target_version", sa.Integer),
    sa.Column("reported_deployment_id", sa.String(128)),
    sa.Column("last_error", sa.Text),
    sa.Column("progress_received", sa.Integer),
    sa.Column("progress_total", sa.Integer),
    sa.Column("agent_version", sa.String(64), nullable=False, server_default=""),
    sa.Column("desired_model", sa.String(128)),
    sa.Column("desired_version", sa.Integer),
    sa.Column("desired_deployment_id", sa.String(128)),
    sa.Column("dropped_total", sa.BigInteger, nullable=False, server_default="0"),
)
_telemetry_v1 = sa.Table(
    "telemetry", _v1_metadata,
    sa.Column("device_id", sa.String(128), sa.ForeignKey("devices.device_id"), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("model", sa.String(128)),
    sa.Column("version", sa.Integer),
    sa.Column("prediction_id", sa.String(128)),
    sa.Column("latency_ms", sa.Float),
    sa.Column("correct", sa.Boolean),
    sa.Column("payload_json", sa.Text, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Index("ix_telemetry_device_kind", "device_id", "kind"),
)


def _create_v1(conn: Connection) -> None:
    # The tables above are the *current* schema. A later migration that changes a table must
    # use explicit DDL here and freeze migration 1 to the v1 table list, never edit it.
    metadata.create_all(conn, tables=[models, model_versions, deployments])
    _v1_metadata.create_all(conn, tables=[_devices_v1, _telemetry_v1])  # frozen v1 shapes


MIGRATIONS: list[Migration] = [
    Migration(1, "models, model_versions, devices, deployments, telemetry", _create_v1),
]


# -- migration 2 (issue 5: rollouts) -----------------------------------------------------------
# Explicit DDL, valid on SQLite and PostgreSQL; the query-side table objects below are on
# ``metadata`` (so ``metadata.drop_all`` in the test fixtures removes them too) and must be kept
# in step with this DDL. Used by controller/rollouts/store.py and controller/fleet/device_registry.py.

rollouts = sa.Table(
    "rollouts", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("spec_json", sa.Text, nullable=False),
    sa.Column("state_json", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False, server_default=""),
    sa.ForeignKeyConstraint(["model", "version"], ["model_versions.model", "model_versions.version"]),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("rollout_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
              sa.ForeignKey("rollouts.id")),
    sa.Column("device_ids_json", sa.Text, nullable=False, server_default="[]"),
    sa.Column("detail_json", sa.Text, nullable=False, server_default="{}"),
)

device_labels = sa.Table(  # labels set by the operator; they override the device's own
    "device_labels", metadata,
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(63), primary_key=True),
    sa.Column("value", sa.String(63), nullable=False),
    sa.Column("set_at", sa.Float, nullable=False),
    sa.Column("set_by", sa.String(128), nullable=False, server_default=""),
)

device_registrations = sa.Table(  # devices an operator registered before their first contact
    "device_registrations", metadata,
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("registered_at", sa.Float, nullable=False),
    sa.Column("registered_by", sa.String(128), nullable=False, server_default=""),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
)


def _create_v2(conn: Connection) -> None:
    pg = conn.dialect.name == "postgresql"
    pk = "id BIGSERIAL PRIMARY KEY" if pg else "id INTEGER PRIMARY KEY AUTOINCREMENT"
    ref = "BIGINT" if pg else "INTEGER"
    ddl = [
        f"""CREATE TABLE rollouts (
            {pk},
            name VARCHAR(128) NOT NULL,
            model VARCHAR(128) NOT NULL,
            version INTEGER NOT NULL,
            spec_json TEXT NOT NULL,
            state_json TEXT NOT NULL,
            status VARCHAR(16) NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0,
            revision INTEGER NOT NULL DEFAULT 0,
            created_at FLOAT NOT NULL,
            updated_at FLOAT NOT NULL,
            created_by VARCHAR(128) NOT NULL DEFAULT '',
            FOREIGN KEY (model, version) REFERENCES model_versions (model, version))""",
        "CREATE INDEX ix_rollouts_status ON rollouts (status)",
        f"""CREATE TABLE audit_log (
            {pk},
            ts FLOAT NOT NULL,
            actor VARCHAR(128) NOT NULL,
            action VARCHAR(64) NOT NULL,
            rollout_id {ref} REFERENCES rollouts (id),
            device_ids_json TEXT NOT NULL DEFAULT '[]',
            detail_json TEXT NOT NULL DEFAULT '{{}}')""",
        "CREATE INDEX ix_audit_log_rollout ON audit_log (rollout_id, id)",
        """CREATE TABLE device_labels (
            device_id VARCHAR(128) NOT NULL,
            key VARCHAR(63) NOT NULL,
            value VARCHAR(63) NOT NULL,
            set_at FLOAT NOT NULL,
            set_by VARCHAR(128) NOT NULL DEFAULT '',
            PRIMARY KEY (device_id, key))""",
        """CREATE TABLE device_registrations (
            device_id VARCHAR(128) PRIMARY KEY,
            registered_at FLOAT NOT NULL,
            registered_by VARCHAR(128) NOT NULL DEFAULT '',
            note TEXT NOT NULL DEFAULT '')""",
    ]
    for statement in ddl:
        conn.exec_driver_sql(statement)


MIGRATIONS.append(Migration(
    2, "rollouts, audit log, operator device labels, device pre-registration", _create_v2))

# -- migration 3 (issue 6: monitoring) ---------------------------------------------------------
# The current shape of the tables migration 3 creates (for queries; created by the explicit DDL
# of _create_v3 below, valid on SQLite and PostgreSQL; keep the two in step).

metrics = sa.Table(
    "metrics", metadata,
    sa.Column("device_id", sa.String(128), sa.ForeignKey("devices.device_id"), primary_key=True),
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("window_start", sa.Float, primary_key=True),
    sa.Column("window_end", sa.Float, nullable=False),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("predictions", sa.BigInteger, nullable=False),
    sa.Column("errors", sa.BigInteger, nullable=False),
    sa.Column("labelled", sa.BigInteger, nullable=False),
    sa.Column("accuracy", sa.Float),
    sa.Column("p95_latency_ms", sa.Float),
    sa.Column("drift_psi", sa.Float),
    sa.Column("drifted", sa.Boolean),
    sa.Column("summary_json", sa.Text, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("evaluated", sa.Boolean, nullable=False, server_default=sa.false()),
)

alert_states = sa.Table(
    "alert_states", metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("firing", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("bad_streak", sa.Integer, nullable=False, server_default="0"),
    sa.Column("good_streak", sa.Integer, nullable=False, server_default="0"),
    sa.Column("model", sa.String(128)),
    sa.Column("version", sa.Integer),
    sa.Column("value", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("since", sa.Float),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
)

alert_events = sa.Table(
    "alert_events", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("device_id", sa.String(128), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("model", sa.String(128)),
    sa.Column("version", sa.Integer),
    sa.Column("value", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("context_json", sa.Text, nullable=False),
)

retrain_runs = sa.Table(
    "retrain_runs", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("new_version", sa.Integer),
    sa.Column("context_json", sa.Text, nullable=False),
)


def _autoincrement_pk(conn: Connection) -> str:
    if conn.dialect.name == "postgresql":
        return "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    return "id INTEGER PRIMARY KEY AUTOINCREMENT"


def _create_v3(conn: Connection) -> None:
    ddl = [
        # telemetry: dedupe key (device_id, seq) -> (device_id, epoch, seq); old rows get epoch 0,
        # the epoch of outboxes created before epochs existed
        """CREATE TABLE telemetry_v3 (
            device_id VARCHAR(128) NOT NULL REFERENCES devices (device_id),
            epoch BIGINT NOT NULL DEFAULT 0,
            seq BIGINT NOT NULL,
            kind VARCHAR(32) NOT NULL,
            ts FLOAT NOT NULL,
            model VARCHAR(128),
            version INTEGER,
            prediction_id VARCHAR(128),
            latency_ms FLOAT,
            correct BOOLEAN,
            payload_json TEXT NOT NULL,
            received_at FLOAT NOT NULL,
            PRIMARY KEY (device_id, epoch, seq))""",
        """INSERT INTO telemetry_v3 (device_id, epoch, seq, kind, ts, model, version,
            prediction_id, latency_ms, correct, payload_json, received_at)
            SELECT device_id, 0, seq, kind, ts, model, version, prediction_id, latency_ms,
                   correct, payload_json, received_at FROM telemetry""",
        "DROP TABLE telemetry",
        "ALTER TABLE telemetry_v3 RENAME TO telemetry",
        "CREATE INDEX ix_telemetry_device_kind ON telemetry (device_id, kind)",
        # one row per device metrics window (an additive summary, docs/monitoring.md)
        """CREATE TABLE metrics (
            device_id VARCHAR(128) NOT NULL REFERENCES devices (device_id),
            model VARCHAR(128) NOT NULL,
            version INTEGER NOT NULL,
            window_start FLOAT NOT NULL,
            window_end FLOAT NOT NULL,
            epoch BIGINT NOT NULL,
            seq BIGINT NOT NULL,
            predictions BIGINT NOT NULL,
            errors BIGINT NOT NULL,
            labelled BIGINT NOT NULL,
            accuracy FLOAT,
            p95_latency_ms FLOAT,
            drift_psi FLOAT,
            drifted BOOLEAN,
            summary_json TEXT NOT NULL,
            received_at FLOAT NOT NULL,
            evaluated BOOLEAN NOT NULL DEFAULT FALSE,
            PRIMARY KEY (device_id, model, version, window_start))""",
        "CREATE INDEX ix_metrics_version_end ON metrics (model, version, window_end)",
        "CREATE INDEX ix_metrics_end ON metrics (window_end)",
        "CREATE INDEX ix_metrics_evaluated ON metrics (evaluated)",
        # alert state per (kind, device): the hysteresis counters survive restarts
        """CREATE TABLE alert_states (
            kind VARCHAR(32) NOT NULL,
            device_id VARCHAR(128) NOT NULL,
            firing BOOLEAN NOT NULL DEFAULT FALSE,
            bad_streak INTEGER NOT NULL DEFAULT 0,
            good_streak INTEGER NOT NULL DEFAULT 0,
            model VARCHAR(128),
            version INTEGER,
            value FLOAT,
            threshold FLOAT,
            since FLOAT,
            updated_at FLOAT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (kind, device_id))""",
        f"""CREATE TABLE alert_events (
            {_autoincrement_pk(conn)},
            ts FLOAT NOT NULL,
            kind VARCHAR(32) NOT NULL,
            device_id VARCHAR(128) NOT NULL,
            event VARCHAR(16) NOT NULL,
            model VARCHAR(128),
            version INTEGER,
            value FLOAT,
            threshold FLOAT,
            detail TEXT NOT NULL,
            context_json TEXT NOT NULL)""",
        "CREATE INDEX ix_alert_events_ts ON alert_events (ts)",
        f"""CREATE TABLE retrain_runs (
            {_autoincrement_pk(conn)},
            started_at FLOAT NOT NULL,
            finished_at FLOAT,
            kind VARCHAR(32) NOT NULL,
            model VARCHAR(128) NOT NULL,
            version INTEGER,
            action VARCHAR(16) NOT NULL,
            status VARCHAR(16) NOT NULL,
            detail TEXT NOT NULL,
            new_version INTEGER,
            context_json TEXT NOT NULL)""",
    ]
    for statement in ddl:
        conn.exec_driver_sql(statement)


MIGRATIONS.append(
    Migration(3, "telemetry keyed by outbox epoch; metrics, alerts, retrain runs", _create_v3))

# -- migration 4 (issue 7: fleet views) --------------------------------------------------------
# What each device ran and when: one row per change of its reported update state or active
# version (written by FleetStore.set_reported), read by the dashboard's device page. Also an
# index on telemetry.ts for the windowed aggregates of the dashboard and /metrics.

device_history = sa.Table(
    "device_history", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("device_id", sa.String(128), sa.ForeignKey("devices.device_id"), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),  # the device's time of the report
    sa.Column("recorded_at", sa.Float, nullable=False),  # the controller's time
    sa.Column("state", sa.String(32)),
    sa.Column("model", sa.String(128)),  # the active model after the change
    sa.Column("version", sa.Integer),
    sa.Column("sha256", sa.String(64)),
    sa.Column("target_model", sa.String(128)),
    sa.Column("target_version", sa.Integer),
    sa.Column("deployment_id", sa.String(128)),
    sa.Column("error", sa.Text),
)


def _create_v4(conn: Connection) -> None:
    pg = conn.dialect.name == "postgresql"
    pk = "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY" if pg else \
        "id INTEGER PRIMARY KEY AUTOINCREMENT"
    for statement in (
        f"""CREATE TABLE device_history (
            {pk},
            device_id VARCHAR(128) NOT NULL REFERENCES devices (device_id),
            ts FLOAT NOT NULL,
            recorded_at FLOAT NOT NULL,
            state VARCHAR(32),
            model VARCHAR(128),
            version INTEGER,
            sha256 VARCHAR(64),
            target_model VARCHAR(128),
            target_version INTEGER,
            deployment_id VARCHAR(128),
            error TEXT)""",
        "CREATE INDEX ix_device_history_device ON device_history (device_id, id)",
        "CREATE INDEX ix_telemetry_ts ON telemetry (ts)",
    ):
        conn.exec_driver_sql(statement)


MIGRATIONS.append(Migration(4, "device version history; telemetry time index", _create_v4))

# -- migration 5 (issue 10: replicas) ----------------------------------------------------------
# One row per lease (controller/app/lease.py): which replica decides (runs rollouts and alerts) and
# until when, on the database's clock; ``term`` counts the hand-overs.

leases = sa.Table(
    "leases", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("acquired_at", sa.Float, nullable=False),
    sa.Column("term", sa.BigInteger, nullable=False),
)


# With a share group, two reports of one device may reach two replicas and be stored in the
# wrong order; ``reported_order`` keeps the device time of the newest report applied, and an
# older one is not applied over it (FleetStore.set_reported).
reported_order = sa.Table(
    "reported_order", metadata,
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False),
)


def _create_v5(conn: Connection) -> None:
    for statement in (
        """CREATE TABLE leases (
            name VARCHAR(64) NOT NULL PRIMARY KEY,
            holder VARCHAR(200) NOT NULL,
            expires_at FLOAT NOT NULL,
            acquired_at FLOAT NOT NULL,
            term BIGINT NOT NULL)""",
        """CREATE TABLE reported_order (
            device_id VARCHAR(128) NOT NULL PRIMARY KEY,
            ts FLOAT NOT NULL)""",
    ):
        conn.exec_driver_sql(statement)


MIGRATIONS.append(Migration(5, "leases: one deciding replica; order of reported states",
                            _create_v5))

# -- migration 6 (issue 4: resumable, reversible updates) --------------------------------------
# The agent reports the artifact staged in its standby slot and the model kept in its previous
# slot (instant rollback); nullable columns of ``devices``, like active_* and target_*. ADD
# COLUMN is transactional on both backends, so concurrent replicas stay serialised by migrate().


def _create_v6(conn: Connection) -> None:
    for slot in ("staged", "previous"):
        for column, kind in (("model", "VARCHAR(128)"), ("version", "INTEGER"),
                             ("sha256", "VARCHAR(64)")):
            conn.exec_driver_sql(f"ALTER TABLE devices ADD COLUMN {slot}_{column} {kind}")


MIGRATIONS.append(Migration(6, "devices: reported staged and previous slots", _create_v6))

# pg_advisory_xact_lock key: b"Edgewise" as a big-endian int64, so replicas agree on it.
MIGRATION_LOCK_KEY = int.from_bytes(b"Edgewise", "big")


def normalize_url(url: str) -> str:
    """Accept a SQLAlchemy URL or a bare file path, so the CLI can take ``--db ./edgewise.db``."""
    if "://" in url:
        return url
    if url in ("", ":memory:"):
        return "sqlite://"
    return f"sqlite:///{Path(url).expanduser().resolve()}"


class Database:
    """Engine plus schema management for one controller database."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False}
            if parsed.database in (None, "", ":memory:"):
                # An in-memory database lives in one connection; share it across threads.
                kwargs["poolclass"] = StaticPool
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = sa.create_engine(self.url, **kwargs)
        self.dialect_name: str = self.engine.dialect.name
        if self.dialect_name == "sqlite":
            _install_sqlite_hooks(self.engine)

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for queries; rolled back at the end, so it never holds a write lock."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except (EdgewiseError, exc.IntegrityError):
            raise
        except (OverflowError, exc.DataError) as e:
            # a value the database cannot hold (an integer past 64 bits): the caller's input
            # is wrong, not the database; one place turns it into a 422 for every endpoint
            raise ValidationError(f"a value is out of the database's range: {e}") from None
        except exc.DBAPIError as e:
            raise StorageError(f"database error: {e.orig!r}") from e

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One committed transaction. On SQLite it starts with ``BEGIN IMMEDIATE`` so that two
        writers queue on busy_timeout instead of one failing when it upgrades a read lock."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(edgewise_begin="BEGIN IMMEDIATE")
                with conn.begin():
                    yield conn
        except (EdgewiseError, exc.IntegrityError):
            raise
        except (OverflowError, exc.DataError) as e:
            # a value the database cannot hold (an integer past 64 bits): the caller's input
            # is wrong, not the database; one place turns it into a 422 for every endpoint
            raise ValidationError(f"a value is out of the database's range: {e}") from None
        except exc.DBAPIError as e:
            raise StorageError(f"database error: {e.orig!r}") from e

    def insert_ignore(self, table: sa.Table) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING for this dialect: the building block of every
        idempotent write (telemetry replays, first contact of a device)."""
        if self.dialect_name == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing()
        if self.dialect_name == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        raise StorageError(f"unsupported database dialect {self.dialect_name!r}")

    def applied_migrations(self) -> list[int]:
        with self.read() as conn:
            if not sa.inspect(conn).has_table("schema_migrations"):
                return []
            rows = conn.execute(sa.select(schema_migrations.c.version)
                                .order_by(schema_migrations.c.version))
            return [r.version for r in rows]

    def migrate(self) -> list[int]:
        """Apply missing migrations in one transaction; return the versions applied now.

        Safe to call from several replicas at once: PostgreSQL serialises them on an advisory
        lock held to the end of the transaction, SQLite on its write lock (BEGIN IMMEDIATE).
        """
        applied_now: list[int] = []
        with self.write() as conn:
            if self.dialect_name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
            schema_migrations.create(conn, checkfirst=True)
            done = set(conn.execute(sa.select(schema_migrations.c.version)).scalars())
            for m in sorted(MIGRATIONS, key=lambda m: m.version):
                if m.version in done:
                    continue
                m.apply(conn)
                conn.execute(schema_migrations.insert().values(
                    version=m.version, description=m.description, applied_at=time.time()))
                applied_now.append(m.version)
        return applied_now

    def dispose(self) -> None:
        self.engine.dispose()


def _install_sqlite_hooks(engine: Engine) -> None:
    """Pragmas per connection, and SQLAlchemy (not the sqlite3 module) emitting BEGIN, which
    is what lets :meth:`Database.write` say ``BEGIN IMMEDIATE`` and makes SELECTs transactional."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA busy_timeout=15000")
            # Switching a fresh file to WAL needs an exclusive lock and SQLite answers "database
            # is locked" at once, without the busy handler, while another process holds a lock
            # (several replicas starting together): retry a few times.
            for attempt in range(50):
                try:
                    cur.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError:
                    if attempt == 49:
                        raise
                    time.sleep(0.05)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get("edgewise_begin", "BEGIN"))
