"""Database set-up on both backends (the migrations: test_migrations.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from controller.storage import migrator
from controller.storage.db import Database, normalize_url
from controller.storage.tables import devices


def test_bare_path_becomes_sqlite_url(tmp_path: Path) -> None:
    assert normalize_url(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path / 'x.db'}"
    assert normalize_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"


def test_sqlite_pragmas(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "p.db"))
    try:
        with db.read() as conn:
            pragma = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                      for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}
        assert pragma == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1,
                          "busy_timeout": 15000}
    finally:
        db.dispose()


def test_in_memory_sqlite_is_shared_across_threads() -> None:
    db = Database(":memory:")
    migrator.upgrade(db)
    seen: list[migrator.Status] = []
    t = threading.Thread(target=lambda: seen.append(migrator.status(db)))
    t.start()
    t.join()
    assert [s.current for s in seen] == [migrator.head()]
    db.dispose()


def test_insert_ignore_skips_duplicates(db: Database) -> None:
    stmt = db.insert_ignore(devices)
    with db.write() as conn:
        conn.execute(stmt, [{"device_id": "d1", "first_seen": 1.0, "last_seen": 1.0},
                            {"device_id": "d1", "first_seen": 2.0, "last_seen": 2.0}])
    with db.read() as conn:
        rows = conn.execute(sa.select(devices.c.device_id, devices.c.first_seen)).all()
    assert [tuple(r) for r in rows] == [("d1", 1.0)]


def test_write_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(RuntimeError), db.write() as conn:
        conn.execute(devices.insert().values(device_id="d1", first_seen=1.0, last_seen=1.0))
        raise RuntimeError("boom")
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(devices)).scalar_one() == 0


def test_a_write_that_finds_sqlite_locked_is_a_storage_error(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE goes to the driver directly: a database locked past the busy timeout is
    still the database's fault (StorageError, retried by the ingest), not the data's."""
    import sqlite3

    from controller.errors import StorageError

    path = tmp_path / "locked.db"
    db = Database(str(path))
    with db.read() as conn:  # the pool's one connection: give up on a lock quickly
        conn.exec_driver_sql("PRAGMA busy_timeout=50")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageError, match="locked"), db.write():
            pass
    finally:
        holder.rollback()
        holder.close()
    with db.write() as conn:  # and the connection is usable again
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    db.dispose()
