"""The Alembic revisions on both backends: they build exactly the tables of
:mod:`controller.storage.tables`, every downgrade undoes its upgrade, a downgrade that would lose
rows refuses and changes nothing, the offline SQL builds the same schema, several processes
upgrading at once apply each revision once, and the start-up check refuses what it must."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from controller.errors import ValidationError
from controller.storage import migrator
from controller.storage.db import Database
from controller.storage.migrations.guards import LossyDowngrade
from controller.storage.tables import devices, metadata, telemetry, watch_states
from tests.harness.paths import REPO_ROOT


def schema_differences(db: Database) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match ``tables.py``.

    One SQLite quirk is left out: a PRIMARY KEY column declared without NOT NULL (the release's
    DDL for some tables) is reported nullable, although SQLAlchemy never writes NULL there and
    the metadata cannot say otherwise for a key column."""
    with db.read() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    flat = [d for group in diffs for d in (group if isinstance(group, list) else [group])]

    def sqlite_key_nullability(diff: Any) -> bool:
        if db.dialect_name != "sqlite" or diff[0] != "modify_nullable":
            return False
        table, column = metadata.tables[diff[2]], diff[3]
        return bool(table.c[column].primary_key)

    return [d for d in flat if not sqlite_key_nullability(d)]


def snapshot(db: Database) -> dict[str, Any]:
    """Tables, columns (name, type, nullability), primary keys and indexes, as reflected."""
    with db.read() as conn:
        inspector = sa.inspect(conn)
        return {
            table: {
                "columns": [(c["name"], str(c["type"]), c["nullable"])
                            for c in inspector.get_columns(table)],
                "pk": inspector.get_pk_constraint(table)["constrained_columns"],
                "indexes": sorted((i["name"], tuple(i["column_names"]))
                                  for i in inspector.get_indexes(table)),
            }
            for table in sorted(inspector.get_table_names()) if table != "alembic_version"}


def revisions() -> list[str]:
    return [r.revision for r in migrator.history()]


@pytest.fixture
def fresh(db_url: str) -> Any:
    database = Database(db_url)
    yield database
    database.dispose()


def test_schema_after_upgrade_is_the_tables_metadata(fresh: Database) -> None:
    assert migrator.upgrade(fresh) == revisions()
    assert schema_differences(fresh) == []
    assert migrator.status(fresh).up_to_date


def test_every_downgrade_undoes_its_upgrade(fresh: Database) -> None:
    """Up one revision at a time, then down one at a time: each schema seen on the way down is
    the one seen on the way up, and the end is an empty database."""
    up = {"base": snapshot(fresh)}
    for rev in revisions():
        assert migrator.upgrade(fresh, rev) == [rev]
        up[rev] = snapshot(fresh)
    for rev, below in zip(reversed(revisions()), ["base", *revisions()][-2::-1], strict=True):
        assert migrator.downgrade(fresh, "-1") == [rev]
        assert snapshot(fresh) == up[below], f"downgrade of {rev}"
    assert snapshot(fresh) == {}
    assert migrator.upgrade(fresh) == revisions()  # and up again
    assert schema_differences(fresh) == []


def test_a_downgrade_that_would_lose_rows_refuses_and_changes_nothing(fresh: Database) -> None:
    migrator.upgrade(fresh)
    with fresh.write() as conn:
        conn.execute(watch_states.insert().values(scope_key="device:d1", model="iris", version=1,
                                                  state_json="{}", updated_at=1.0))
    with pytest.raises(LossyDowngrade, match=r"below revision 0007 .* 1 row\(s\) of watch_states"):
        migrator.downgrade(fresh, "0006")
    assert migrator.status(fresh).current == migrator.head()
    with fresh.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(watch_states)).scalar() == 1


def test_telemetry_of_one_outbox_survives_the_downgrade_past_epochs(fresh: Database) -> None:
    """Revision 0003 keyed telemetry by outbox epoch: going below it keeps epoch-0 records and
    refuses while a replaced outbox's records (epoch > 0) exist."""
    migrator.upgrade(fresh)
    with fresh.write() as conn:
        conn.execute(devices.insert().values(device_id="d1", first_seen=1.0, last_seen=1.0))
        conn.execute(telemetry.insert(), [
            {"device_id": "d1", "epoch": epoch, "seq": seq, "kind": "prediction", "ts": 1.0,
             "payload_json": "{}", "received_at": 1.0} for epoch, seq in ((0, 1), (0, 2), (3, 1))])
    with pytest.raises(LossyDowngrade, match=r"1 row\(s\) of telemetry"):
        migrator.downgrade(fresh, "0002")
    with fresh.write() as conn:
        conn.execute(telemetry.delete().where(telemetry.c.epoch == 3))
    assert migrator.downgrade(fresh, "0002") == revisions()[:1:-1]  # newest first
    with fresh.read() as conn:
        rows = conn.exec_driver_sql("SELECT device_id, seq FROM telemetry ORDER BY seq").all()
    assert [tuple(r) for r in rows] == [("d1", 1), ("d1", 2)]


def test_offline_sql_applied_by_hand_builds_the_same_schema(fresh: Database) -> None:
    sql = migrator.upgrade_sql(fresh, start="base")
    assert "CREATE TABLE alembic_version" in sql and "CREATE TABLE watch_states" in sql
    if fresh.dialect_name == "sqlite":
        raw = sqlite3.connect(fresh.engine.url.database or "")
        try:
            raw.executescript(sql)
        finally:
            raw.close()
    else:
        raw_pg = fresh.engine.raw_connection()
        try:
            with raw_pg.cursor() as cursor:
                cursor.execute(sql)
            raw_pg.commit()
        finally:
            raw_pg.close()
    assert migrator.status(fresh).up_to_date
    assert schema_differences(fresh) == []
    # and the downgrade script takes it back to nothing
    assert "DROP TABLE watch_states" in migrator.downgrade_sql(fresh, "base")


def test_several_processes_upgrading_at_once_apply_each_revision_once(
        fresh: Database, tmp_path: Path) -> None:
    """Replicas starting together: each process upgrades, one applies, none fails. They start
    their upgrade together: each waits until all of them are ready."""
    processes = 4
    code = textwrap.dedent(f"""
        import json, pathlib, sys, time
        from controller.storage import Database, migrator
        gate = pathlib.Path({str(tmp_path)!r})
        db = Database({fresh.url!r})
        (gate / f"ready-{{sys.argv[1]}}").touch()
        while len(list(gate.glob("ready-*"))) < {processes}:
            time.sleep(0.01)
        print(json.dumps(migrator.upgrade(db)))
    """)
    running = [subprocess.Popen([sys.executable, "-c", code, str(i)], cwd=REPO_ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(processes)]
    outcomes = [p.communicate(timeout=120) for p in running]
    assert [p.returncode for p in running] == [0] * processes, [err for _, err in outcomes]
    applied = sorted((json.loads(out) for out, _ in outcomes), key=len)
    assert applied == [[]] * (processes - 1) + [revisions()]
    assert migrator.status(fresh).up_to_date


def test_a_database_newer_than_the_code_is_refused(fresh: Database) -> None:
    migrator.upgrade(fresh)
    with fresh.write() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    state = migrator.status(fresh)
    assert (state.current, state.known, state.up_to_date) == ("9999", False, False)
    for auto_migrate in (True, False):
        with pytest.raises(migrator.SchemaAhead, match="revision 9999, which this edgewise"):
            migrator.ensure_current(fresh, auto_migrate)
    with pytest.raises(migrator.SchemaAhead):
        migrator.upgrade(fresh)


def test_without_auto_migrate_a_database_behind_is_refused_and_left_alone(
        fresh: Database) -> None:
    migrator.upgrade(fresh, "0005")
    with pytest.raises(migrator.SchemaBehind, match=r"at revision 0005 .* `edgewise db upgrade`"):
        migrator.ensure_current(fresh, auto_migrate=False)
    assert migrator.status(fresh).current == "0005"
    assert migrator.ensure_current(fresh, auto_migrate=True) == revisions()[5:]
    assert migrator.ensure_current(fresh, auto_migrate=False) == []


def test_an_unknown_target_is_one_line_naming_the_history(fresh: Database) -> None:
    with pytest.raises(ValidationError, match="edgewise db history"):
        migrator.upgrade(fresh, "nonsense")
