"""Databases made by release 0.1.0 (tests/data/release-0.1.0: its own migrations, history in
``schema_migrations``, rows in every table) upgrade in place: adopted at their revision, brought
to the current schema, every row kept, and the stores read them."""

from __future__ import annotations

import gzip
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from controller.fleet.store import FleetStore
from controller.fleet.telemetry_store import TelemetryStore
from controller.storage import migrator
from controller.storage.db import Database
from tests.harness.fixtures import fresh_database
from tests.harness.paths import REPO_ROOT
from tests.integration.controller.store.test_migrations import schema_differences

RELEASE = REPO_ROOT / "tests" / "data" / "release-0.1.0"
ROWS = {"models": 1, "model_versions": 2, "devices": 2, "deployments": 1, "telemetry": 6,
        "rollouts": 1, "audit_log": 1, "device_labels": 1, "device_registrations": 1,
        "metrics": 1, "alert_states": 1, "alert_events": 1, "retrain_runs": 1,
        "device_history": 1, "leases": 1, "reported_order": 1, "watch_states": 1}


def release_sqlite(tmp_path: Path) -> str:
    path = tmp_path / "controller.sqlite"
    path.write_bytes(gzip.decompress((RELEASE / "edgewise.sqlite.gz").read_bytes()))
    return str(path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def release_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db = Database(release_sqlite(tmp_path))
        yield db
        db.dispose()
        return
    with fresh_database(request.getfixturevalue("pg_admin")) as url:
        restore_dump(url)
        db = Database(url)
        yield db
        db.dispose()


def restore_dump(url: str) -> None:
    """Replay the release's pg_dump through the driver (psql's meta-commands left out), on a
    connection of its own: the dump empties the session's search_path."""
    sql = gzip.decompress((RELEASE / "edgewise.pg.sql.gz").read_bytes()).decode()
    sql = "\n".join(line for line in sql.splitlines() if not line.startswith("\\"))
    engine = sa.create_engine(url)
    try:
        raw: Any = engine.raw_connection()
        try:
            with raw.cursor() as cursor:
                cursor.execute(sql)
            raw.commit()
        finally:
            raw.close()
    finally:
        engine.dispose()


def counts(db: Database) -> dict[str, int]:
    with db.read() as conn:
        return {table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ROWS}


def test_a_release_database_is_adopted_and_upgraded_in_place(release_db: Database) -> None:
    before = migrator.status(release_db)
    assert (before.current, before.legacy) == ("0007", True)
    assert counts(release_db) == ROWS

    applied = migrator.upgrade(release_db)
    assert applied == [r.revision for r in migrator.history()][7:]  # those after the release

    after = migrator.status(release_db)
    assert after.up_to_date and not after.legacy
    with release_db.read() as conn:
        assert not sa.inspect(conn).has_table("schema_migrations")
    assert counts(release_db) == ROWS
    assert schema_differences(release_db) == []
    # the stores read what the release wrote
    device = FleetStore(release_db).get("pi-1")
    assert (device["staged_version"], device["active_sha256"]) == (2, f"{1:064x}")
    assert TelemetryStore(release_db).keys("pi-1") == [(0, 1), (0, 2), (0, 3), (7, 1), (7, 2),
                                                         (7, 3)]
    assert migrator.upgrade(release_db) == []


def test_the_offline_sql_adopts_a_release_database_too(tmp_path: Path) -> None:
    db = Database(release_sqlite(tmp_path))
    try:
        sql = migrator.upgrade_sql(db)
        assert "INSERT INTO alembic_version (version_num) VALUES ('0007')" in sql
        raw = sqlite3.connect(db.engine.url.database or "")
        try:
            raw.executescript(sql)
        finally:
            raw.close()
        state = migrator.status(db)
        assert state.up_to_date and not state.legacy
        assert counts(db) == ROWS
    finally:
        db.dispose()

