"""The controller's database: engine set-up for SQLite or PostgreSQL, and transactions.

One :class:`Database` wraps a SQLAlchemy Core engine on SQLite (the default, a single file) or
PostgreSQL (several controller replicas). The stores take a ``Database`` and use
:meth:`Database.read` / :meth:`Database.write`, so that transaction semantics that differ
between the two backends live here and nowhere else. The tables are in
:mod:`controller.storage.tables`; :mod:`controller.storage.migrator` brings a database to them.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from controller.errors import EdgewiseError, StorageError, ValidationError


def normalize_url(url: str) -> str:
    """Accept a SQLAlchemy URL or a bare file path, so the CLI can take ``--db ./edgewise.db``."""
    if "://" in url:
        return url
    if url in ("", ":memory:"):
        return "sqlite://"
    return f"sqlite:///{Path(url).expanduser().resolve()}"


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Database errors as the controller's: a value the database cannot hold (an integer past
    64 bits) is the caller's input, not the database (one place turns it into a 422 for every
    endpoint); anything else the driver raises is a StorageError (503)."""
    try:
        yield
    except (EdgewiseError, exc.IntegrityError):
        raise
    except (OverflowError, exc.DataError) as e:
        raise ValidationError(f"a value is out of the database's range: {e}") from None
    except exc.DBAPIError as e:
        raise StorageError(f"database error: {e.orig!r}") from e


class Database:
    """The engine of one controller database and its transactions."""

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
        with _translated_errors(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One committed transaction. On SQLite it starts with ``BEGIN IMMEDIATE`` so that two
        writers queue on busy_timeout instead of one failing when it upgrades a read lock."""
        with _translated_errors(), self.engine.connect() as conn:
            conn.execution_options(edgewise_begin="BEGIN IMMEDIATE")
            with conn.begin():
                yield conn

    def insert_ignore(self, table: sa.Table) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING for this dialect: the building block of every
        idempotent write (telemetry replays, first contact of a device)."""
        if self.dialect_name == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing()
        if self.dialect_name == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        raise StorageError(f"unsupported database dialect {self.dialect_name!r}")

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
        # straight to the driver: through exec_driver_sql, SQLAlchemy's statement machinery
        # cost more CPU than the BEGIN, about a fifth of a one-message ingest transaction
        statement = conn.get_execution_options().get("edgewise_begin", "BEGIN")
        driver: Any = conn.connection.driver_connection
        try:
            driver.execute(statement).close()
        except sqlite3.Error as e:  # as SQLAlchemy would have raised it (a busy database)
            raise exc.DBAPIError.instance(statement, None, e, sqlite3.Error) from e

