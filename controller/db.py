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

from controller.errors import EdgewiseError, StorageError

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

telemetry = sa.Table(
    "telemetry", metadata,
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


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_v1(conn: Connection) -> None:
    # The tables above are the *current* schema. A later migration that changes a table must
    # use explicit DDL here and freeze migration 1 to the v1 table list, never edit it.
    metadata.create_all(conn, tables=[models, model_versions, devices, deployments, telemetry])


MIGRATIONS: list[Migration] = [
    Migration(1, "models, model_versions, devices, deployments, telemetry", _create_v1),
]

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
