"""Database set-up and migrations on both backends."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from controller.storage.db import Database, normalize_url
from controller.storage.migrations import MIGRATIONS
from controller.storage.tables import devices, schema_migrations

EXPECTED_TABLES = {"schema_migrations", "models", "model_versions", "devices", "deployments",
                   "telemetry"}


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
    db.migrate()
    seen: list[list[int]] = []
    t = threading.Thread(target=lambda: seen.append(db.applied_migrations()))
    t.start()
    t.join()
    assert seen == [[m.version for m in MIGRATIONS]]
    db.dispose()


def test_migrate_creates_schema_and_twice_is_noop(db_url: str) -> None:
    db = Database(db_url)
    try:
        assert db.migrate() == [m.version for m in MIGRATIONS]
        assert set(sa.inspect(db.engine).get_table_names()) >= EXPECTED_TABLES
        assert db.migrate() == []
        with db.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(schema_migrations)
                                ).scalar_one() == len(MIGRATIONS)
    finally:
        db.dispose()


def test_concurrent_migrate_applies_once(db_url: str) -> None:
    """Replicas starting together: each migrates, exactly one applies, none fails."""
    replicas = [Database(db_url) for _ in range(4)]
    barrier = threading.Barrier(len(replicas))
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def start(db: Database) -> None:
        barrier.wait()
        try:
            results.append(db.migrate())
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start, args=(db,)) for db in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    try:
        assert errors == []
        assert sorted(results, key=len) == [[]] * (len(replicas) - 1) + [[m.version for m in MIGRATIONS]]
        assert replicas[0].applied_migrations() == [m.version for m in MIGRATIONS]
    finally:
        for db in replicas:
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
