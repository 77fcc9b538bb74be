"""sampling shares per device group

One row per label selector the operator set a sampling share for (`edgewise data sampling
set`): the share of their predictions whose records the selected devices keep.
"""

from __future__ import annotations

from alembic import op

from controller.storage.migrations.guards import Loss, refuse_loss

revision = "0017"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE sampling_shares (
        selector VARCHAR(1024) NOT NULL,
        share FLOAT NOT NULL,
        set_at FLOAT NOT NULL,
        PRIMARY KEY (selector))""")


def downgrade() -> None:
    refuse_loss(revision, [Loss("sampling_shares", "the sampling shares set per group")])
    op.drop_table("sampling_shares")
