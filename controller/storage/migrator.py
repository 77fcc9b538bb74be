"""Bringing a database to the schema this code expects, and back: Alembic driven for the
controller and for `edgewise db`.

Every online change runs in one transaction of :meth:`Database.write` under the migration lock
(:func:`lock_for_migration`, also taken by the Alembic environment), so several controller
replicas starting together migrate once. A database made before Alembic (its history in
``schema_migrations``, revision N recorded as version N) is adopted on its first upgrade: stamped
at the matching revision, ``schema_migrations`` dropped, then upgraded like any other.

A database at a revision this code does not know was upgraded by a newer release: it is refused,
never touched.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.schema import CreateTable

from controller.errors import StorageError, ValidationError
from controller.storage.db import Database
from controller.storage.migrations import SCRIPT_LOCATION

# pg_advisory_xact_lock key: b"Edgewise" as a big-endian int64, so replicas agree on it.
MIGRATION_LOCK_KEY = int.from_bytes(b"Edgewise", "big")

LEGACY_TABLE = "schema_migrations"  # the hand-rolled history of release 0.1.0
BASE = "base"  # Alembic's name for "before the first revision"


class SchemaBehind(StorageError):
    """The database needs revisions this code has and auto-migration is off."""


class SchemaAhead(StorageError):
    """The database is at a revision this code does not know: a newer release upgraded it."""


@dataclass(frozen=True)
class Revision:
    revision: str
    down_revision: str | None
    description: str
    applied: bool | None = None  # None: the database was not asked


@dataclass(frozen=True)
class Status:
    current: str | None  # None: an empty database
    head: str
    pending: tuple[str, ...]  # revisions an upgrade would apply, oldest first
    legacy: bool  # history still in schema_migrations, adopted by the next upgrade
    known: bool  # False: a newer release made this database

    @property
    def up_to_date(self) -> bool:
        return self.known and not self.pending

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pending": list(self.pending), "up_to_date": self.up_to_date}


def lock_for_migration(conn: Connection) -> None:
    """Serialise migrations of one database for the rest of ``conn``'s transaction. PostgreSQL:
    an advisory lock every replica takes with the same key. SQLite needs none here: the
    transaction of :meth:`Database.write` begins IMMEDIATE and so holds the write lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))


@functools.cache
def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config(""))


def head() -> str:
    heads = script_directory().get_heads()
    if len(heads) != 1:  # a merge left undone: refuse rather than pick one
        raise StorageError(f"the migrations have {len(heads)} heads {sorted(heads)}; expected one")
    return heads[0]


def status(db: Database) -> Status:
    """Where the database stands against this code; reads only."""
    with db.read() as conn:
        current, legacy = _recorded_revision(conn)
    return _status(current, legacy)


def history(db: Database | None = None) -> list[Revision]:
    """Every revision, oldest first; with a database, whether each is applied to it."""
    script = script_directory()
    applied: set[str] | None = None
    if db is not None:
        state = status(db)
        applied = set() if state.current is None or not state.known else {
            r.revision for r in script.iterate_revisions(state.current, BASE)}
    return [Revision(r.revision, _down(r.down_revision), r.doc,
                     None if applied is None else r.revision in applied)
            for r in reversed(list(script.walk_revisions()))]


def upgrade(db: Database, target: str = "head") -> list[str]:
    """Apply the revisions up to ``target``; return those applied now, oldest first."""
    with _alembic_errors(), db.write() as conn:
        lock_for_migration(conn)
        _adopt_legacy(conn)
        before = _known_revision(conn)
        command.upgrade(_config(db.url, connection=conn), target)
        after = _known_revision(conn)
    return _between(before, after)


def downgrade(db: Database, target: str) -> list[str]:
    """Revert the revisions above ``target`` (``base``: every one); return those reverted, newest
    first. A revision that would delete rows refuses (:class:`~.guards.LossyDowngrade`) and the
    transaction leaves the database as it was."""
    with _alembic_errors(), db.write() as conn:
        lock_for_migration(conn)
        _adopt_legacy(conn)
        before = _known_revision(conn)
        command.downgrade(_config(db.url, connection=conn), target)
        after = _known_revision(conn)
    return list(reversed(_between(after, before)))


def ensure_current(db: Database, auto_migrate: bool) -> list[str]:
    """What the controller does at start: upgrade (``auto_migrate``) or refuse a database that is
    behind; a database ahead of the code is refused either way."""
    state = status(db)
    if not state.known:
        raise _ahead(state)
    if auto_migrate:
        return upgrade(db)
    if state.pending:
        at = f"at revision {state.current}" if state.current else "empty"
        raise SchemaBehind(f"the database is {at} and this edgewise needs {state.head}; "
                           "auto_migrate is off: run `edgewise db upgrade` (with the same "
                           "--config/--db-url), then start again")
    return []


def upgrade_sql(db: Database, target: str = "head", start: str | None = None) -> str:
    """The SQL an upgrade from ``start`` (default: where the database stands) would run, for a
    DBA to review and apply by hand. A database made before Alembic gets its adoption too."""
    prologue = ""
    if start is None:
        state = status(db)
        if not state.known:
            raise _ahead(state)
        start = state.current or BASE
        if state.legacy:
            prologue = _adoption_sql(db.url, start)
    return prologue + _offline(db.url, lambda cfg: command.upgrade(
        cfg, target if start == BASE else f"{start}:{target}", sql=True))


def downgrade_sql(db: Database, target: str, start: str | None = None) -> str:
    """The SQL a downgrade to ``target`` would run. It cannot check for rows that would be lost:
    offline, nothing looks at the data."""
    if start is None:
        state = status(db)
        if not state.known:
            raise _ahead(state)
        if state.current is None:
            raise ValidationError("the database is empty: there is nothing to downgrade")
        if state.legacy:
            raise ValidationError("this database still keeps its history in schema_migrations: "
                                  "run `edgewise db upgrade` once before a downgrade")
        start = state.current
    return _offline(db.url, lambda cfg: command.downgrade(cfg, f"{start}:{target}", sql=True))


# -- helpers ---------------------------------------------------------------------------------

def _config(url: str, connection: Connection | None = None,
            output: io.StringIO | None = None) -> Config:
    """Alembic's configuration, built here rather than read from an alembic.ini: the URL stays
    out of configparser (whose interpolation a ``%`` in a password would trip)."""
    cfg = Config(output_buffer=output)
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.attributes["url"] = url
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _offline(url: str, run: Any) -> str:
    out = io.StringIO()
    with _alembic_errors():
        run(_config(url, output=out))
    return out.getvalue()


@contextmanager
def _alembic_errors() -> Iterator[None]:
    """Alembic's refusals (an unknown revision, a target on the wrong side) as one line."""
    try:
        yield
    except CommandError as e:
        raise ValidationError(f"{e}; `edgewise db history` lists the revisions") from None


def _recorded_revision(conn: Connection) -> tuple[str | None, bool]:
    """The revision the database records, and whether it is in the legacy table."""
    inspector = sa.inspect(conn)
    if inspector.has_table("alembic_version"):
        return MigrationContext.configure(conn).get_current_revision(), False
    if not inspector.has_table(LEGACY_TABLE):
        return None, False
    versions = sorted(conn.execute(sa.text(f"SELECT version FROM {LEGACY_TABLE}")).scalars())
    if not versions:
        return None, True
    if versions != list(range(1, len(versions) + 1)):
        raise StorageError(f"{LEGACY_TABLE} lists versions {versions}, not 1 to N in order: this "
                           "database was not made by edgewise's migrations; restore a backup")
    return f"{versions[-1]:04d}", True


def _status(current: str | None, legacy: bool) -> Status:
    script = script_directory()
    top = head()
    known = current is None or _exists(script, current)
    pending: tuple[str, ...] = ()
    if known:
        pending = tuple(reversed([r.revision for r in script.iterate_revisions(
            top, current or BASE)]))
    return Status(current, top, pending, legacy, known)


def _exists(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def _ahead(state: Status) -> SchemaAhead:
    return SchemaAhead(f"the database is at revision {state.current}, which this edgewise "
                       f"(newest revision {state.head}) does not know: a newer edgewise upgraded "
                       "it; run that release, or downgrade the database with it first")


def _known_revision(conn: Connection) -> str | None:
    current, legacy = _recorded_revision(conn)
    state = _status(current, legacy)
    if not state.known:
        raise _ahead(state)
    return current


def _adopt_legacy(conn: Connection) -> None:
    """Move a pre-Alembic database's history to ``alembic_version``, in the caller's transaction."""
    current, legacy = _recorded_revision(conn)
    if not legacy:
        return
    if current is not None:
        if not _exists(script_directory(), current):
            raise _ahead(_status(current, legacy))
        MigrationContext.configure(conn).stamp(script_directory(), current)
    conn.execute(sa.text(f"DROP TABLE {LEGACY_TABLE}"))


def _adoption_sql(url: str, revision: str) -> str:
    """:func:`_adopt_legacy` as SQL for the database's dialect."""
    dialect = make_url(url).get_dialect()()
    version_table = sa.Table(  # the shape Alembic gives its table
        "alembic_version", sa.MetaData(),
        sa.Column("version_num", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))
    statements = [str(CreateTable(version_table).compile(dialect=dialect)).strip()]
    if revision != BASE:
        statements.append(f"INSERT INTO alembic_version (version_num) VALUES ('{revision}')")
    statements.append(f"DROP TABLE {LEGACY_TABLE}")
    return "-- adopt a database made before Alembic: its history moves to alembic_version\n\n" \
        + "".join(f"{s};\n\n" for s in statements)


def _between(low: str | None, high: str | None) -> list[str]:
    """Revisions above ``low`` up to ``high``, oldest first."""
    if high is None or high == low:
        return []
    revisions = script_directory().iterate_revisions(high, low or BASE)
    return list(reversed([r.revision for r in revisions]))


def _down(down_revision: Any) -> str | None:
    return down_revision if isinstance(down_revision, str) or down_revision is None \
        else ",".join(down_revision)


__all__ = ["BASE", "MIGRATION_LOCK_KEY", "Revision", "SchemaAhead",
           "SchemaBehind", "Status", "downgrade", "downgrade_sql", "ensure_current", "head",
           "history", "lock_for_migration", "status", "upgrade", "upgrade_sql"]
