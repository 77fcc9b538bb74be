"""Migration 7: the state of each sequential detector set (a ``ModelWatch``) per scope (a device
or a group of devices) and model version, so evidence accumulates across evaluations, controller
restarts and replicas."""

from __future__ import annotations

from sqlalchemy.engine import Connection

VERSION = 7
DESCRIPTION = "sequential detector states per device or group and model version"


def apply(conn: Connection) -> None:
    conn.exec_driver_sql("""CREATE TABLE watch_states (
        scope_key VARCHAR(200) NOT NULL,
        model VARCHAR(128) NOT NULL,
        version INTEGER NOT NULL,
        state_json TEXT NOT NULL,
        updated_at FLOAT NOT NULL,
        PRIMARY KEY (scope_key, model, version))""")
