"""Revision 0018 on a database with rollouts and their audit log: the rollouts table is rebuilt
on SQLite (model and version become nullable for agent rollouts) without losing a row or an
audit entry's rollout, and the downgrade refuses while an agent rollout would be lost."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from controller.storage import migrator
from controller.storage.db import Database
from controller.storage.migrations.guards import LossyDowngrade


def test_rollouts_and_their_audit_entries_survive_and_agent_rollouts_fit(db_url: str) -> None:
    db = Database(db_url)
    try:
        migrator.upgrade(db, "0015")
        with db.write() as conn:
            conn.exec_driver_sql("INSERT INTO models (name, task, created_at) VALUES "
                                 "('iris', 'classification', 1.0)")
            conn.exec_driver_sql(
                "INSERT INTO model_versions (model, version, sha256, size, format, "
                "manifest_json, created_at) VALUES ('iris', 1, 'ab', 1, 'onnx', '{}', 1.0)")
            conn.exec_driver_sql(
                "INSERT INTO rollouts (id, name, model, version, spec_json, state_json, status, "
                "created_at, updated_at) VALUES (7, 'iris:1', 'iris', 1, '{}', '{}', "
                "'completed', 1.0, 1.0)")
            conn.exec_driver_sql(
                "INSERT INTO audit_log (ts, actor, action, rollout_id) VALUES "
                "(1.0, 'op', 'rollout.created', 7), (2.0, 'op', 'device.labelled', NULL)")
        assert migrator.upgrade(db)[-1] == migrator.head()
        with db.write() as conn:
            audit = conn.exec_driver_sql(
                "SELECT action, rollout_id FROM audit_log ORDER BY ts").all()
            assert [tuple(r) for r in audit] == [("rollout.created", 7), ("device.labelled", None)]
            conn.exec_driver_sql(  # an agent rollout names no model version
                "INSERT INTO rollouts (id, name, model, version, spec_json, state_json, status, "
                "created_at, updated_at) VALUES (8, 'agent 2.0.0', NULL, NULL, '{}', '{}', "
                "'pending', 2.0, 2.0)")
            conn.exec_driver_sql("INSERT INTO audit_log (ts, actor, action, rollout_id) VALUES "
                                 "(3.0, 'op', 'rollout.created', 8)")
            columns = {c["name"] for c in sa.inspect(conn).get_columns("devices")}
        assert {"agent_update_target", "agent_update_state"} <= columns
        with pytest.raises(LossyDowngrade, match="agent rollouts"):
            migrator.downgrade(db, "0015")
        with db.write() as conn:
            conn.exec_driver_sql("DELETE FROM audit_log WHERE rollout_id = 8")
            conn.exec_driver_sql("DELETE FROM rollouts WHERE id = 8")
        migrator.downgrade(db, "0015")
        with db.read() as conn:
            audit = conn.exec_driver_sql("SELECT rollout_id FROM audit_log ORDER BY ts").all()
            assert [r[0] for r in audit] == [7, None]
            nullable = {c["name"]: c["nullable"] for c in sa.inspect(conn).get_columns("rollouts")}
        assert (nullable["model"], nullable["version"]) == (False, False)
    finally:
        db.dispose()
