"""device health windows

One row per device health window (resources over the window and the served model version's
cost), for the device health history, health alerts and rollout resource gates.
"""

from __future__ import annotations

from alembic import op

from controller.storage.migrations.guards import Loss, refuse_loss

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE health_windows (
        device_id VARCHAR(128) NOT NULL REFERENCES devices (device_id),
        epoch BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        window_start FLOAT NOT NULL,
        window_end FLOAT NOT NULL,
        model VARCHAR(128),
        version INTEGER,
        samples INTEGER NOT NULL,
        rss_bytes FLOAT,
        rss_max_bytes FLOAT,
        cpu_percent FLOAT,
        mem_available_bytes FLOAT,
        load1 FLOAT,
        disk_free_bytes FLOAT,
        disk_total_bytes FLOAT,
        temp_c FLOAT,
        throttled BIGINT,
        outbox_backlog FLOAT,
        rtt_ms FLOAT,
        reconnects INTEGER,
        agent_started_ts FLOAT,
        uptime_s FLOAT,
        session_bytes FLOAT,
        predictions BIGINT,
        cpu_s FLOAT,
        latency_ms FLOAT,
        gauges_json TEXT NOT NULL,
        rejected TEXT NOT NULL,
        received_at FLOAT NOT NULL,
        PRIMARY KEY (device_id, epoch, seq))""")
    op.execute(
        "CREATE INDEX ix_health_windows_device_end ON health_windows (device_id, window_end)")
    op.execute("CREATE INDEX ix_health_windows_version_end "
               "ON health_windows (model, version, window_end)")


def downgrade() -> None:
    refuse_loss(revision, [Loss("health_windows", "the devices' health history")])
    op.drop_table("health_windows")
