"""`edgewise db current|history|upgrade|downgrade` on a real SQLite file and PostgreSQL, and
`edgewise controller serve --no-auto-migrate` refusing a database behind the code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from controller.app.cli import cli
from controller.storage import migrator
from controller.storage.db import Database


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def touch(db_url: str) -> None:
    """Connect once, so an empty database exists (an SQLite file is created on first use)."""
    db = Database(db_url)
    try:
        with db.read():
            pass
    finally:
        db.dispose()


def revisions() -> list[str]:
    return [r.revision for r in migrator.history()]


def test_upgrade_current_history_downgrade(db_url: str) -> None:
    touch(db_url)
    empty = as_json(run("db", "current", "--db-url", db_url, "--json"))
    assert (empty["current"], empty["pending"], empty["up_to_date"]) == (None, revisions(), False)
    assert "run `edgewise db upgrade`" in run("db", "current", "--db-url", db_url).stdout

    up = as_json(run("db", "upgrade", "0005", "--db-url", db_url, "--json"))
    assert (up["applied"], up["current"]) == (revisions()[:5], "0005")
    history = as_json(run("db", "history", "--db-url", db_url, "--json"))
    assert [(h["revision"], h["applied"]) for h in history] == [
        (r, n < 5) for n, r in enumerate(revisions())]
    assert "0007" in run("db", "history", "--db-url", db_url).stdout

    text = run("db", "upgrade", "--db-url", db_url)
    assert text.exit_code == 0 and text.stdout.startswith(f"upgraded to {migrator.head()}")
    assert run("db", "upgrade", "--db-url", db_url).stdout.startswith("nothing to do")

    refused = run("db", "downgrade", "0005", "--db-url", db_url)
    assert refused.exit_code == 1 and "--yes" in refused.stderr
    assert as_json(run("db", "current", "--db-url", db_url, "--json"))["up_to_date"]
    down = as_json(run("db", "downgrade", "0005", "--yes", "--db-url", db_url, "--json"))
    assert (down["reverted"], down["current"]) == (revisions()[:4:-1], "0005")


def test_offline_sql_prints_without_touching_the_database(db_url: str) -> None:
    touch(db_url)
    sql = run("db", "upgrade", "--sql", "--db-url", db_url)
    assert sql.exit_code == 0 and "CREATE TABLE models" in sql.stdout
    assert as_json(run("db", "current", "--db-url", db_url, "--json"))["current"] is None
    payload = as_json(run("db", "upgrade", "--sql", "--from", "0006", "--db-url", db_url,
                          "--json"))
    assert "CREATE TABLE watch_states" in payload["sql"] and "CREATE TABLE models" not in \
        payload["sql"]
    down = run("db", "downgrade", "0006", "--sql", "--from", "0007", "--db-url", db_url)
    assert down.exit_code == 0 and "DROP TABLE watch_states" in down.stdout


def test_bad_revisions_and_newer_databases_are_one_line(db_url: str) -> None:
    bad = run("db", "upgrade", "nonsense", "--db-url", db_url)
    assert bad.exit_code == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert "edgewise db history" in bad.stderr
    db = Database(db_url)
    try:
        migrator.upgrade(db)
        with db.write() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    finally:
        db.dispose()
    newer = run("db", "upgrade", "--db-url", db_url)
    assert newer.exit_code == 1 and "revision 9999, which this edgewise" in newer.stderr
    assert "unknown to this edgewise" in run("db", "current", "--db-url", db_url).stdout


def test_serve_without_auto_migrate_refuses_a_database_behind(tmp_path: Path) -> None:
    url = str(tmp_path / "controller.sqlite")
    db = Database(url)
    try:
        migrator.upgrade(db, "0005")
    finally:
        db.dispose()
    result = run("controller", "serve", "--data-dir", str(tmp_path), "--db-url", url,
                 "--no-auto-migrate", "--port", "0")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: the database is at revision 0005 and this edgewise needs {migrator.head()}; "
        "auto_migrate is off: run `edgewise db upgrade` (with the same --config/--db-url), then "
        "start again"]
    config = tmp_path / "controller.toml"
    config.write_text(f'auto_migrate = false\ndb_url = "{url}"\n')
    from_config = run("controller", "serve", "--config", str(config), "--data-dir",
                      str(tmp_path), "--port", "0")
    assert from_config.exit_code == 1 and "auto_migrate is off" in from_config.stderr


def test_a_sqlite_path_without_a_database_is_named_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "controller.sqlite"
    for command in (["db", "current"], ["db", "history"], ["db", "downgrade", "base", "--yes"]):
        result = run(*command, "--db-url", str(missing))
        assert result.exit_code == 1
        assert result.stderr.strip().splitlines() == [
            f"error: SQLite database (check --data-dir, --db-url or --config) '{missing}' not "
            "found"]
    assert not missing.parent.exists()
