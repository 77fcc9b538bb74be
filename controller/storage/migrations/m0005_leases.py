"""Migration 5: the lease that lets one of several replicas decide (rollouts, alerts), and the
device time of the newest reported state applied, so an older report stored later by another
replica is not applied over it."""

from __future__ import annotations

from sqlalchemy.engine import Connection

VERSION = 5
DESCRIPTION = 'leases: one deciding replica; order of reported states'


def apply(conn: Connection) -> None:
    for statement in (
        """CREATE TABLE leases (
            name VARCHAR(64) NOT NULL PRIMARY KEY,
            holder VARCHAR(200) NOT NULL,
            expires_at FLOAT NOT NULL,
            acquired_at FLOAT NOT NULL,
            term BIGINT NOT NULL)""",
        """CREATE TABLE reported_order (
            device_id VARCHAR(128) NOT NULL PRIMARY KEY,
            ts FLOAT NOT NULL)""",
    ):
        conn.exec_driver_sql(statement)

