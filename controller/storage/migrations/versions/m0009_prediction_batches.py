"""predictions recorded columnar: one telemetry row for many predictions

An agent recording columnar (``telemetry_columnar``) sends one ``predictions`` record per flush
and model version, its predictions as arrays; the controller stores it as one telemetry row.
``n`` is how many predictions a row stands for (1 for every other row), so the views that count
predictions and average latencies weigh each row by it.
"""

from __future__ import annotations

from alembic import op

from controller.storage.migrations.guards import Loss, refuse_loss

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE telemetry ADD COLUMN n BIGINT NOT NULL DEFAULT 1")


def downgrade() -> None:
    refuse_loss(revision, [Loss("telemetry", "columnar prediction records, which the older "
                                "schema would count as one prediction each",
                                "kind = 'predictions'")])
    # SQLite drops a column itself since 3.35 (no batch copy of the table)
    op.execute("ALTER TABLE telemetry DROP COLUMN n")
