"""seal counters

The highest seal counter the controller issued to each device (``edgewise_wire.seal``): every
signed desired state carries the next one, and a device refuses any counter not above the highest
it accepted, which makes a captured desired state useless once a newer one was accepted.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE seal_counters (
        device_id VARCHAR(128) NOT NULL PRIMARY KEY,
        counter BIGINT NOT NULL,
        issued_at FLOAT NOT NULL)""")


def downgrade() -> None:
    # Nothing a device needs is lost: counters start from the wall clock in milliseconds
    # (controller/fleet/seal_counters.py), so the ones issued after an upgrade again are still
    # above what the devices accepted, as long as the controller's clock is right.
    op.drop_table("seal_counters")
