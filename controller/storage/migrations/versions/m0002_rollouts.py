"""rollouts, audit log, operator device labels, device pre-registration

Rollouts, the audit log, operator labels on devices, devices registered before their first
contact. Explicit DDL, valid on SQLite and PostgreSQL.
"""

from __future__ import annotations

from alembic import op

from controller.storage.migrations.guards import Loss, refuse_loss

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pg = op.get_context().dialect.name == "postgresql"
    pk = "id BIGSERIAL PRIMARY KEY" if pg else "id INTEGER PRIMARY KEY AUTOINCREMENT"
    ref = "BIGINT" if pg else "INTEGER"
    ddl = [
        f"""CREATE TABLE rollouts (
            {pk},
            name VARCHAR(128) NOT NULL,
            model VARCHAR(128) NOT NULL,
            version INTEGER NOT NULL,
            spec_json TEXT NOT NULL,
            state_json TEXT NOT NULL,
            status VARCHAR(16) NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0,
            revision INTEGER NOT NULL DEFAULT 0,
            created_at FLOAT NOT NULL,
            updated_at FLOAT NOT NULL,
            created_by VARCHAR(128) NOT NULL DEFAULT '',
            FOREIGN KEY (model, version) REFERENCES model_versions (model, version))""",
        "CREATE INDEX ix_rollouts_status ON rollouts (status)",
        f"""CREATE TABLE audit_log (
            {pk},
            ts FLOAT NOT NULL,
            actor VARCHAR(128) NOT NULL,
            action VARCHAR(64) NOT NULL,
            rollout_id {ref} REFERENCES rollouts (id),
            device_ids_json TEXT NOT NULL DEFAULT '[]',
            detail_json TEXT NOT NULL DEFAULT '{{}}')""",
        "CREATE INDEX ix_audit_log_rollout ON audit_log (rollout_id, id)",
        """CREATE TABLE device_labels (
            device_id VARCHAR(128) NOT NULL,
            key VARCHAR(63) NOT NULL,
            value VARCHAR(63) NOT NULL,
            set_at FLOAT NOT NULL,
            set_by VARCHAR(128) NOT NULL DEFAULT '',
            PRIMARY KEY (device_id, key))""",
        """CREATE TABLE device_registrations (
            device_id VARCHAR(128) PRIMARY KEY,
            registered_at FLOAT NOT NULL,
            registered_by VARCHAR(128) NOT NULL DEFAULT '',
            note TEXT NOT NULL DEFAULT '')""",
    ]
    for statement in ddl:
        op.execute(statement)


def downgrade() -> None:
    refuse_loss(revision, [
        Loss("rollouts", "rollouts and their state"),
        Loss("audit_log", "the audit log"),
        Loss("device_labels", "labels set by operators"),
        Loss("device_registrations", "devices registered before their first contact"),
    ])
    for table in ("audit_log", "rollouts", "device_labels", "device_registrations"):
        op.drop_table(table)

