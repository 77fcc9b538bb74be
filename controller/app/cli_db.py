"""`edgewise db`: the controller database's schema by hand: where it stands, its revisions,
upgrades and downgrades, and the SQL of either for a DBA (:mod:`controller.storage.migrator`).

These commands work on the database itself (``--db-url``, ``--config`` or ``--data-dir``, as
`edgewise controller serve` takes them), not through the REST API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import make_url

from controller.cli.common import data_dir_option, emit, fail, format_table, json_option
from controller.storage import Database, migrator
from controller.storage.db import normalize_url


def _database_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--db-url", envvar="EDGEWISE_DB_URL",
                        help="Database URL, e.g. postgresql+psycopg://user@host/db (env "
                             "EDGEWISE_DB_URL; default: the config's, or the SQLite file in the "
                             "data directory).")(func)
    return data_dir_option(func)


@contextmanager
def _database(config_path: Path | None, data_dir: Path | None, db_url: str | None,
              must_exist: bool = True) -> Iterator[Database]:
    """The database the options name. Only an upgrade may create an SQLite file: a command that
    reads one where there is none was given a wrong --data-dir or --db-url, and says so."""
    from controller.config import load_controller_config
    from controller.errors import NotFoundError

    config = load_controller_config(config_path, data_dir=data_dir, db_url=db_url)
    url = make_url(normalize_url(config.database_url))
    if must_exist and url.get_backend_name() == "sqlite" and url.database not in (None, "") \
            and not Path(url.database).exists():
        raise NotFoundError("SQLite database (check --data-dir, --db-url or --config)",
                            url.database)
    db = Database(config.database_url)
    try:
        yield db
    finally:
        db.dispose()


def _where(db: Database) -> str:
    return db.engine.url.render_as_string(hide_password=True)


def _describe(state: migrator.Status) -> str:
    if not state.known:
        return f"{state.current}, unknown to this edgewise (newest {state.head}): a newer " \
               "release upgraded it"
    at = state.current or "empty (no revision)"
    if not state.pending:
        text = f"{at} (head)"
    else:
        text = f"{at}, {len(state.pending)} behind {state.head}: run `edgewise db upgrade`"
    if state.legacy:
        text += "; history still in schema_migrations (the next upgrade moves it)"
    return text


@click.group("db")
def db() -> None:
    """The controller database's schema: where it stands, its revisions, upgrade, downgrade.

    The controller upgrades its database at start unless auto_migrate is off (config
    `auto_migrate = false` or `serve --no-auto-migrate`); then an operator runs
    `edgewise db upgrade`, or applies `edgewise db upgrade --sql` by hand.

    \b
    Example: edgewise db current --data-dir /var/lib/edgewise
    Example: edgewise db upgrade --db-url postgresql+psycopg://edgewise@db/edgewise
    Example: edgewise db upgrade --sql > upgrade.sql
    """


@db.command("current")
@_database_options
@json_option
def current(config_path: Path | None, data_dir: Path | None, db_url: str | None,
            as_json: bool) -> None:
    """The database's revision against the newest this release knows.

    Example: edgewise db current --config /etc/edgewise/controller.toml --json
    """
    with _database(config_path, data_dir, db_url) as database:
        state = migrator.status(database)
        emit({"database": _where(database), **state.as_dict()}, as_json,
             f"database  {_where(database)}\nrevision  {_describe(state)}")


@db.command("history")
@_database_options
@json_option
def history(config_path: Path | None, data_dir: Path | None, db_url: str | None,
            as_json: bool) -> None:
    """Every revision, oldest first, and whether the database has it.

    Example: edgewise db history --data-dir /var/lib/edgewise
    """
    with _database(config_path, data_dir, db_url) as database:
        revisions = migrator.history(database)
    rows = [{"revision": r.revision, "down_revision": r.down_revision,
             "description": r.description, "applied": r.applied} for r in revisions]
    emit(rows, as_json, lambda rs: format_table(
        ["REVISION", "APPLIED", "DESCRIPTION"],
        [[r["revision"], "yes" if r["applied"] else "no", r["description"]] for r in rs]))


_SQL_HELP = "Print the SQL instead of running it, for a DBA to review and apply."
_FROM_HELP = "With --sql: the revision to start from ('base': an empty database; default: where " \
             "the database stands)."


@db.command("upgrade")
@click.argument("revision", default="head")
@_database_options
@click.option("--sql", "offline", is_flag=True, help=_SQL_HELP)
@click.option("--from", "start", help=_FROM_HELP)
@json_option
def upgrade(revision: str, config_path: Path | None, data_dir: Path | None, db_url: str | None,
            offline: bool, start: str | None, as_json: bool) -> None:
    """Upgrade the database to REVISION (default: head, the newest).

    Safe while replicas run or start: every upgrade holds the migration lock, and one that
    finds nothing to do changes nothing. A database made by release 0.1.0 (history in
    schema_migrations) is adopted in place.

    Example: edgewise db upgrade --config /etc/edgewise/controller.toml

    Example: edgewise db upgrade --sql --db-url postgresql+psycopg://edgewise@db/edgewise
    """
    # an upgrade creates an SQLite file; its SQL from a given revision reads no database
    with _database(config_path, data_dir, db_url,
                   must_exist=offline and start is None) as database:
        if offline:
            sql = migrator.upgrade_sql(database, revision, start)
            emit({"sql": sql}, as_json, sql.rstrip())
            return
        applied = migrator.upgrade(database, revision)
        state = migrator.status(database)
    emit({"applied": applied, **state.as_dict()}, as_json,
         f"upgraded to {state.current}: applied {', '.join(applied)}" if applied
         else f"nothing to do: the database is at {state.current or 'base'}")


@db.command("downgrade")
@click.argument("revision")
@_database_options
@click.option("--yes", is_flag=True, help="Really downgrade (the schema loses what the reverted "
              "revisions added).")
@click.option("--sql", "offline", is_flag=True,
              help=_SQL_HELP + " It cannot check for rows the downgrade would delete.")
@click.option("--from", "start", help=_FROM_HELP)
@json_option
def downgrade(revision: str, config_path: Path | None, data_dir: Path | None,
              db_url: str | None, yes: bool, offline: bool, start: str | None,
              as_json: bool) -> None:
    """Downgrade the database to REVISION ('base': nothing left), to go back to an older
    release. Stop every controller first.

    A revision whose downgrade would delete rows (rollouts, telemetry, alert history, ...)
    refuses and names them; nothing is changed.

    Example: edgewise db downgrade 0005 --yes --config /etc/edgewise/controller.toml
    """
    with _database(config_path, data_dir, db_url) as database:
        if offline:
            sql = migrator.downgrade_sql(database, revision, start)
            emit({"sql": sql}, as_json, sql.rstrip())
            return
        if not yes:
            state = migrator.status(database)
            fail(f"downgrading the database from {state.current or 'base'} to {revision} drops "
                 "what those revisions added; stop the controllers and re-run with --yes")
        reverted = migrator.downgrade(database, revision)
        state = migrator.status(database)
    emit({"reverted": reverted, **state.as_dict()}, as_json,
         f"downgraded to {state.current or 'base'}: reverted {', '.join(reverted)}" if reverted
         else f"nothing to do: the database is at {state.current or 'base'}")


COMMANDS = [db]
