"""alert acknowledgements and silences

``alert_acks``: who acknowledged the firing of an alert (the event that fired it), so
`edgewise alerts` and the dashboard show it handled. ``alert_silences``: label matchers and a
time span; the alerts they match are not notified (Alertmanager, webhooks) until it ends.
"""

from __future__ import annotations

from alembic import op

from controller.storage.migrations.guards import Loss, refuse_loss

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE alert_acks (
        kind VARCHAR(32) NOT NULL,
        device_id VARCHAR(128) NOT NULL,
        event_id BIGINT NOT NULL,
        acked_at FLOAT NOT NULL,
        acked_by VARCHAR(256) NOT NULL,
        comment TEXT DEFAULT '' NOT NULL,
        PRIMARY KEY (kind, device_id))""")
    if op.get_context().dialect.name == "postgresql":
        op.execute("""CREATE TABLE alert_silences (
            id BIGSERIAL PRIMARY KEY,
            matchers_json TEXT NOT NULL,
            starts_at FLOAT NOT NULL,
            ends_at FLOAT NOT NULL,
            created_by VARCHAR(256) NOT NULL,
            comment TEXT DEFAULT '' NOT NULL)""")
    else:
        op.execute("""CREATE TABLE alert_silences (
            id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
            matchers_json TEXT NOT NULL,
            starts_at FLOAT NOT NULL,
            ends_at FLOAT NOT NULL,
            created_by VARCHAR(256) NOT NULL,
            comment TEXT DEFAULT '' NOT NULL)""")
    op.execute("CREATE INDEX ix_alert_silences_ends_at ON alert_silences (ends_at)")


def downgrade() -> None:
    refuse_loss(revision, [Loss("alert_acks", "who acknowledged which alert"),
                           Loss("alert_silences", "the alert silences")])
    op.drop_table("alert_silences")
    op.drop_table("alert_acks")
