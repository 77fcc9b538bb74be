"""Alembic's environment for the controller's database, run by Alembic for every command.

Online, it runs on the connection :mod:`controller.storage.migrator` hands it (inside that
module's one transaction) or, when Alembic is driven directly, on one of its own; either way it
first takes the migration lock, so controller replicas starting together against one PostgreSQL
database migrate one after the other and the later ones find nothing left to do. Offline
(``--sql``), it writes the SQL for the database's dialect instead of running it.
"""

from __future__ import annotations

from alembic import context

from controller.storage.db import Database
from controller.storage.migrator import lock_for_migration
from controller.storage.tables import metadata

config = context.config


def run_offline() -> None:
    context.configure(url=config.attributes["url"], target_metadata=metadata,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        lock_for_migration(connection)
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    db = Database(config.attributes.get("url") or config.get_main_option("sqlalchemy.url") or "")
    try:
        with db.write() as own:
            lock_for_migration(own)
            context.configure(connection=own, target_metadata=metadata)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        db.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
