"""The controller's tables as they are now: what the stores query and write.

Created by the revisions in :mod:`controller.storage.migrations`, whose explicit DDL (or frozen
copies of older shapes) must stay in step with these definitions, indexes included: a revision
never reads this module, so a table can change here without changing what an old revision
creates. ``tests/integration/controller/store/test_migrations.py`` compares the two.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

models = sa.Table(
    "models", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("task", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


model_versions = sa.Table(
    "model_versions", metadata,
    sa.Column("model", sa.String(128), sa.ForeignKey("models.name"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("manifest_json", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


# agent bundles (controller/agent_bundles): one archive per version label, in the artifact store
agent_versions = sa.Table(
    "agent_versions", metadata,
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("manifest_json", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_agent_versions_sha256", "sha256"),
)


# revision 0017: the share of prediction records each group of devices keeps
# (controller/sampling), one row per label selector
sampling_shares = sa.Table(
    "sampling_shares", metadata,
    sa.Column("selector", sa.String(1024), primary_key=True),
    sa.Column("share", sa.Float, nullable=False),
    sa.Column("set_at", sa.Float, nullable=False),
)


devices = sa.Table(
    "devices", metadata,
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("first_seen", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("online", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("labels_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("state", sa.String(32)),
    sa.Column("active_model", sa.String(128)),
    sa.Column("active_version", sa.Integer),
    sa.Column("active_sha256", sa.String(64)),
    sa.Column("target_model", sa.String(128)),
    sa.Column("target_version", sa.Integer),
    sa.Column("reported_deployment_id", sa.String(128)),
    sa.Column("last_error", sa.Text),
    sa.Column("progress_received", sa.Integer),
    sa.Column("progress_total", sa.Integer),
    sa.Column("agent_version", sa.String(64), nullable=False, server_default=""),
    sa.Column("desired_model", sa.String(128)),
    sa.Column("desired_version", sa.Integer),
    sa.Column("desired_deployment_id", sa.String(128)),
    sa.Column("dropped_total", sa.BigInteger, nullable=False, server_default="0"),
    # revision 0006: the agent's standby slot (a verified artifact waiting to be
    # activated) and its previous slot (kept for an instant rollback), as last reported
    sa.Column("staged_model", sa.String(128)),
    sa.Column("staged_version", sa.Integer),
    sa.Column("staged_sha256", sa.String(64)),
    sa.Column("previous_model", sa.String(128)),
    sa.Column("previous_version", sa.Integer),
    sa.Column("previous_sha256", sa.String(64)),
    # revision 0018: the agent's self-update as last reported (``agent_update``): the agent
    # version it was last asked for and where that stands (probation, current, failed, ...)
    sa.Column("agent_update_target", sa.String(64)),
    sa.Column("agent_update_state", sa.String(32)),
    # revision 0019: the device class the agent reports (its agent.toml's); NULL until an agent
    # that reports one has (older agents do not: their class is unknown)
    sa.Column("device_class", sa.String(64)),
)


deployments = sa.Table(
    "deployments", metadata,
    sa.Column("deployment_id", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("selector", sa.Text),
    sa.ForeignKeyConstraint(["model", "version"], ["model_versions.model", "model_versions.version"]),
)


# Current schema (revision 0003): an agent outbox's records are keyed by its epoch too, so a
# replaced outbox whose seq restarts at 1 is not taken for a replay (docs/monitoring.md).
telemetry = sa.Table(
    "telemetry", metadata,
    sa.Column("device_id", sa.String(128), sa.ForeignKey("devices.device_id"), primary_key=True),
    sa.Column("epoch", sa.BigInteger, primary_key=True, autoincrement=False, server_default="0"),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("model", sa.String(128)),
    sa.Column("version", sa.Integer),
    sa.Column("prediction_id", sa.String(128)),
    sa.Column("latency_ms", sa.Float),
    sa.Column("correct", sa.Boolean),
    sa.Column("payload_json", sa.Text, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    # revision 0009: how many predictions the row stands for (a columnar "predictions" record
    # holds many; every other row 1)
    sa.Column("n", sa.BigInteger, nullable=False, server_default="1"),
    sa.Index("ix_telemetry_device_kind", "device_id", "kind"),
    sa.Index("ix_telemetry_ts", "ts"),
)


rollouts = sa.Table(
    "rollouts", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False),
    # revision 0018: NULL for an agent rollout (its agent version is in spec_json)
    sa.Column("model", sa.String(128)),
    sa.Column("version", sa.Integer),
    sa.Column("spec_json", sa.Text, nullable=False),
    sa.Column("state_json", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False, server_default=""),
    sa.ForeignKeyConstraint(["model", "version"], ["model_versions.model", "model_versions.version"]),
    sa.Index("ix_rollouts_status", "status"),
)


audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("rollout_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
              sa.ForeignKey("rollouts.id")),
    sa.Column("device_ids_json", sa.Text, nullable=False, server_default="[]"),
    sa.Column("detail_json", sa.Text, nullable=False, server_default="{}"),
    sa.Index("ix_audit_log_rollout", "rollout_id", "id"),
)


device_labels = sa.Table(  # labels set by the operator; they override the device's own
    "device_labels", metadata,
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(63), primary_key=True),
    sa.Column("value", sa.String(63), nullable=False),
    sa.Column("set_at", sa.Float, nullable=False),
    sa.Column("set_by", sa.String(128), nullable=False, server_default=""),
)


device_registrations = sa.Table(  # devices an operator registered before their first contact
    "device_registrations", metadata,
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("registered_at", sa.Float, nullable=False),
    sa.Column("registered_by", sa.String(128), nullable=False, server_default=""),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
)


metrics = sa.Table(
    "metrics", metadata,
    sa.Column("device_id", sa.String(128), sa.ForeignKey("devices.device_id"), primary_key=True),
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("window_start", sa.Float, primary_key=True),
    sa.Column("window_end", sa.Float, nullable=False),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("predictions", sa.BigInteger, nullable=False),
    sa.Column("errors", sa.BigInteger, nullable=False),
    sa.Column("labelled", sa.BigInteger, nullable=False),
    sa.Column("accuracy", sa.Float),
    sa.Column("p95_latency_ms", sa.Float),
    sa.Column("drift_psi", sa.Float),
    sa.Column("drifted", sa.Boolean),
    sa.Column("summary_json", sa.Text, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("evaluated", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_metrics_version_end", "model", "version", "window_end"),
    sa.Index("ix_metrics_end", "window_end"),
    sa.Index("ix_metrics_evaluated", "evaluated"),
)


alert_states = sa.Table(
    "alert_states", metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("firing", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("bad_streak", sa.Integer, nullable=False, server_default="0"),
    sa.Column("good_streak", sa.Integer, nullable=False, server_default="0"),
    sa.Column("model", sa.String(128)),
    sa.Column("version", sa.Integer),
    sa.Column("value", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("since", sa.Float),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
)


alert_events = sa.Table(
    "alert_events", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("device_id", sa.String(128), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("model", sa.String(128)),
    sa.Column("version", sa.Integer),
    sa.Column("value", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("context_json", sa.Text, nullable=False),
    sa.Index("ix_alert_events_ts", "ts"),
)


# an operator's acknowledgement of the firing of an alert (the event that fired it): a new
# firing is a new event and needs its own
alert_acks = sa.Table(
    "alert_acks", metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("acked_at", sa.Float, nullable=False),
    sa.Column("acked_by", sa.String(256), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, server_default=""),
)


# silences: alerts whose labels match every matcher are not notified until ends_at
alert_silences = sa.Table(
    "alert_silences", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("matchers_json", sa.Text, nullable=False),
    sa.Column("starts_at", sa.Float, nullable=False),
    sa.Column("ends_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_alert_silences_ends_at", "ends_at"),
)


retrain_runs = sa.Table(
    "retrain_runs", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("new_version", sa.Integer),
    sa.Column("context_json", sa.Text, nullable=False),
)


device_history = sa.Table(
    "device_history", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("device_id", sa.String(128), sa.ForeignKey("devices.device_id"), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),  # the device's time of the report
    sa.Column("recorded_at", sa.Float, nullable=False),  # the controller's time
    sa.Column("state", sa.String(32)),
    sa.Column("model", sa.String(128)),  # the active model after the change
    sa.Column("version", sa.Integer),
    sa.Column("sha256", sa.String(64)),
    sa.Column("target_model", sa.String(128)),
    sa.Column("target_version", sa.Integer),
    sa.Column("deployment_id", sa.String(128)),
    sa.Column("error", sa.Text),
    sa.Index("ix_device_history_device", "device_id", "id"),
)


leases = sa.Table(
    "leases", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("acquired_at", sa.Float, nullable=False),
    sa.Column("term", sa.BigInteger, nullable=False),
)


# With a share group, two reports of one device may reach two replicas and be stored in the
# wrong order; ``reported_order`` keeps the device time of the newest report applied, and an
# older one is not applied over it (FleetStore.set_reported).
reported_order = sa.Table(
    "reported_order", metadata,
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False),
)


# the state of the sequential detectors (controller.monitoring.watch.ModelWatch) of one device or
# group of devices ("group:site=berlin") for one model version
watch_states = sa.Table(
    "watch_states", metadata,
    sa.Column("scope_key", sa.String(200), primary_key=True),
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("state_json", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


# one device health window (migration 8): gauges as the alerts and charts read them (the mean,
# or the extreme that matters: least memory available, least disk free, hottest), the served
# version's cost, and every gauge's [min, mean, max] in gauges_json
health_windows = sa.Table(
    "health_windows", metadata,
    sa.Column("device_id", sa.String(128), sa.ForeignKey("devices.device_id"), primary_key=True),
    sa.Column("epoch", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("window_start", sa.Float, nullable=False),
    sa.Column("window_end", sa.Float, nullable=False),
    sa.Column("model", sa.String(128)),
    sa.Column("version", sa.Integer),
    sa.Column("samples", sa.Integer, nullable=False),
    sa.Column("rss_bytes", sa.Float),
    sa.Column("rss_max_bytes", sa.Float),
    sa.Column("cpu_percent", sa.Float),
    sa.Column("mem_available_bytes", sa.Float),
    sa.Column("load1", sa.Float),
    sa.Column("disk_free_bytes", sa.Float),
    sa.Column("disk_total_bytes", sa.Float),
    sa.Column("temp_c", sa.Float),
    sa.Column("throttled", sa.BigInteger),
    sa.Column("outbox_backlog", sa.Float),
    sa.Column("rtt_ms", sa.Float),
    sa.Column("reconnects", sa.Integer),
    sa.Column("agent_started_ts", sa.Float),
    sa.Column("uptime_s", sa.Float),
    sa.Column("session_bytes", sa.Float),
    sa.Column("predictions", sa.BigInteger),
    sa.Column("cpu_s", sa.Float),
    sa.Column("latency_ms", sa.Float),
    sa.Column("gauges_json", sa.Text, nullable=False),
    sa.Column("rejected", sa.Text, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Index("ix_health_windows_device_end", "device_id", "window_end"),
    sa.Index("ix_health_windows_version_end", "model", "version", "window_end"),
)


# the highest seal counter issued to each device (migration 12, controller/fleet/seal_counters.py):
# each signed desired state carries the next one; devices refuse a counter not above the highest
# they accepted
seal_counters = sa.Table(
    "seal_counters", metadata,
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("counter", sa.BigInteger, nullable=False),
    sa.Column("issued_at", sa.Float, nullable=False),
)


# -- experiments: shadow runs and A/B tests (controller/experiments) -----------------------------

experiments = sa.Table(
    "experiments", metadata,
    sa.Column("experiment_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("candidate_version", sa.Integer, nullable=False),
    sa.Column("control_version", sa.Integer, nullable=False),
    sa.Column("spec_json", sa.Text, nullable=False),
    sa.Column("arms_json", sa.Text, nullable=False),  # device -> "candidate" | "control" | "both"
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("verdict", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("stopped_at", sa.Float),
    sa.Column("signed_at", sa.Float, nullable=False),  # when its orders were last signed
    sa.Column("rollout_id", sa.Integer),
    sa.Index("ix_experiments_status", "status"),
)

experiment_windows = sa.Table(
    "experiment_windows", metadata,
    sa.Column("device_id", sa.String(128), sa.ForeignKey("devices.device_id"), primary_key=True),
    sa.Column("epoch", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("experiment_id", sa.String(64), nullable=False),
    sa.Column("window_end", sa.Float, nullable=False),
    sa.Column("record_json", sa.Text, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Index("ix_experiment_windows_experiment_end", "experiment_id", "window_end"),
)
