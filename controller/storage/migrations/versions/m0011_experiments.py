"""experiments

One row per experiment (its spec, which arm each device is on, its status and verdict, the
rollout its promotion started) and one row per experiment window a device reported (stored once
per (device, epoch, seq), in the telemetry's transaction), from which every figure of an
experiment is recomputed, so a restarted controller shows what it showed before.
"""

from __future__ import annotations

from alembic import op

from controller.storage.migrations.guards import Loss, refuse_loss

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE experiments (
        experiment_id VARCHAR(64) NOT NULL PRIMARY KEY,
        name VARCHAR(128) NOT NULL,
        mode VARCHAR(16) NOT NULL,
        model VARCHAR(128) NOT NULL,
        candidate_version INTEGER NOT NULL,
        control_version INTEGER NOT NULL,
        spec_json TEXT NOT NULL,
        arms_json TEXT NOT NULL,
        status VARCHAR(16) NOT NULL,
        verdict VARCHAR(32) NOT NULL,
        created_at FLOAT NOT NULL,
        created_by VARCHAR(128) NOT NULL,
        stopped_at FLOAT,
        signed_at FLOAT NOT NULL,
        rollout_id INTEGER)""")
    op.execute("CREATE INDEX ix_experiments_status ON experiments (status)")
    op.execute("""CREATE TABLE experiment_windows (
        device_id VARCHAR(128) NOT NULL REFERENCES devices (device_id),
        epoch BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        experiment_id VARCHAR(64) NOT NULL,
        window_end FLOAT NOT NULL,
        record_json TEXT NOT NULL,
        received_at FLOAT NOT NULL,
        PRIMARY KEY (device_id, epoch, seq))""")
    op.execute("CREATE INDEX ix_experiment_windows_experiment_end "
               "ON experiment_windows (experiment_id, window_end)")


def downgrade() -> None:
    refuse_loss(revision, [Loss("experiments", "the experiments and their verdicts"),
                           Loss("experiment_windows", "the experiments' windows")])
    op.drop_table("experiment_windows")
    op.drop_table("experiments")
