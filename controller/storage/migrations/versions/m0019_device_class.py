"""device classes

Agents report their configured device class (``device_class`` in their presence and reported
state); each device row keeps the last one reported, NULL while unknown (an agent from before
this reports none). Rollouts and deployments of a class-specific model version leave out the
devices known to be of another class.
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE devices ADD COLUMN device_class VARCHAR(64)")


def downgrade() -> None:
    # nothing to keep: every agent that reports its class reports it again
    op.drop_column("devices", "device_class")
