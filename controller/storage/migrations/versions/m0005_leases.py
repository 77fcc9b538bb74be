"""leases: one deciding replica; order of reported states

The lease that lets one of several replicas decide (rollouts, alerts), and the device time of the
newest reported state applied, so an older report stored later by another replica is not applied
over it.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in (
        """CREATE TABLE leases (
            name VARCHAR(64) NOT NULL PRIMARY KEY,
            holder VARCHAR(200) NOT NULL,
            expires_at FLOAT NOT NULL,
            acquired_at FLOAT NOT NULL,
            term BIGINT NOT NULL)""",
        """CREATE TABLE reported_order (
            device_id VARCHAR(128) NOT NULL PRIMARY KEY,
            ts FLOAT NOT NULL)""",
    ):
        op.execute(statement)


def downgrade() -> None:
    # Coordination state only, nothing to keep: a lease expires within seconds and the replicas
    # elect again; the order of reports is re-learnt from the next report of each device.
    op.drop_table("reported_order")
    op.drop_table("leases")

