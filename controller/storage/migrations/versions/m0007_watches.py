"""sequential detector states per device or group and model version

The state of each sequential detector set (a ``ModelWatch``) per scope (a device or a group of
devices) and model version, so evidence accumulates across evaluations, controller restarts and
replicas.
"""

from __future__ import annotations

from alembic import op

from controller.storage.migrations.guards import Loss, refuse_loss

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE watch_states (
        scope_key VARCHAR(200) NOT NULL,
        model VARCHAR(128) NOT NULL,
        version INTEGER NOT NULL,
        state_json TEXT NOT NULL,
        updated_at FLOAT NOT NULL,
        PRIMARY KEY (scope_key, model, version))""")


def downgrade() -> None:
    refuse_loss(revision, [Loss("watch_states", "the evidence the sequential detectors gathered")])
    op.drop_table("watch_states")
