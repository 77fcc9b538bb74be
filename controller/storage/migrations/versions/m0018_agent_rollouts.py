"""agent rollouts

A rollout may move devices to an agent version instead of a model version: ``rollouts.model``
and ``rollouts.version`` become nullable (NULL for an agent rollout, whose agent version is in
its spec), and each device row keeps the agent's self-update as last reported (the agent version
it was asked for, and where that stands), which is what an agent rollout's gates read.
"""

from __future__ import annotations

from alembic import op

from controller.storage.migrations.guards import Loss, refuse_loss

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_COLUMNS = """name VARCHAR(128) NOT NULL,
            model VARCHAR(128){null},
            version INTEGER{null},
            spec_json TEXT NOT NULL,
            state_json TEXT NOT NULL,
            status VARCHAR(16) NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0,
            revision INTEGER NOT NULL DEFAULT 0,
            created_at FLOAT NOT NULL,
            updated_at FLOAT NOT NULL,
            created_by VARCHAR(128) NOT NULL DEFAULT '',
            FOREIGN KEY (model, version) REFERENCES model_versions (model, version)"""


def _sqlite_rebuild(nullable: bool) -> None:
    """SQLite cannot change a column's NOT NULL: build the table again and copy the rows.

    The audit log refers to rollouts by id, and with foreign keys on (they cannot be switched
    off inside the migration's transaction) dropping a table that audit rows refer to fails:
    the references are set aside in a temporary table while the rollouts table is replaced,
    then put back, to the same ids."""
    op.execute("CREATE TEMPORARY TABLE audit_refs_0018 AS "
               "SELECT id, rollout_id FROM audit_log WHERE rollout_id IS NOT NULL")
    op.execute("UPDATE audit_log SET rollout_id = NULL WHERE rollout_id IS NOT NULL")
    op.execute(f"""CREATE TABLE rollouts_0018 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            {_COLUMNS.format(null='' if nullable else ' NOT NULL')})""")
    op.execute("INSERT INTO rollouts_0018 SELECT id, name, model, version, spec_json, state_json, "
               "status, priority, revision, created_at, updated_at, created_by FROM rollouts")
    op.execute("DROP TABLE rollouts")
    op.execute("ALTER TABLE rollouts_0018 RENAME TO rollouts")
    op.execute("CREATE INDEX ix_rollouts_status ON rollouts (status)")
    op.execute("UPDATE audit_log SET rollout_id = (SELECT r.rollout_id FROM audit_refs_0018 r "
               "WHERE r.id = audit_log.id) WHERE id IN (SELECT id FROM audit_refs_0018)")
    op.execute("DROP TABLE audit_refs_0018")


def upgrade() -> None:
    op.execute("ALTER TABLE devices ADD COLUMN agent_update_target VARCHAR(64)")
    op.execute("ALTER TABLE devices ADD COLUMN agent_update_state VARCHAR(32)")
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE rollouts ALTER COLUMN model DROP NOT NULL, "
                   "ALTER COLUMN version DROP NOT NULL")
    else:
        _sqlite_rebuild(nullable=True)


def downgrade() -> None:
    refuse_loss(revision, [Loss("rollouts", "agent rollouts", "model IS NULL")])
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE rollouts ALTER COLUMN model SET NOT NULL, "
                   "ALTER COLUMN version SET NOT NULL")
    else:
        _sqlite_rebuild(nullable=False)
    op.drop_column("devices", "agent_update_state")
    op.drop_column("devices", "agent_update_target")
