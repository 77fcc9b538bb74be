"""Migration 6: the artifact a device reports staged in its standby slot and the model kept in its
previous slot (instant rollback): nullable columns of ``devices``. ADD COLUMN is
transactional on both backends, so concurrent replicas stay serialised by ``migrate()``."""

from __future__ import annotations

from sqlalchemy.engine import Connection

VERSION = 6
DESCRIPTION = 'devices: reported staged and previous slots'


def apply(conn: Connection) -> None:
    for slot in ("staged", "previous"):
        for column, kind in (("model", "VARCHAR(128)"), ("version", "INTEGER"),
                             ("sha256", "VARCHAR(64)")):
            conn.exec_driver_sql(f"ALTER TABLE devices ADD COLUMN {slot}_{column} {kind}")

