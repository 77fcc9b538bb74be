"""models, model_versions, devices, deployments, telemetry

Models, model versions, devices, deployments and telemetry, as they were first created. Frozen
copies of those shapes: later revisions changed ``devices`` (the reported slots) and ``telemetry``
(keyed by outbox epoch), and this one keeps creating exactly what it always did.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import CreateIndex, CreateTable

from controller.storage.migrations.guards import Loss, refuse_loss

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Later revisions reshaped ``telemetry`` (3) and ``devices`` (6): these are the shapes of 1.
_v1_metadata = sa.MetaData()


_devices_v1 = sa.Table(
    "devices", _v1_metadata,
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
)


_telemetry_v1 = sa.Table(
    "telemetry", _v1_metadata,
    sa.Column("device_id", sa.String(128), sa.ForeignKey("devices.device_id"), primary_key=True),
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
    sa.Index("ix_telemetry_device_kind", "device_id", "kind"),
)

_models_v1 = sa.Table(
    "models", _v1_metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("task", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


_model_versions_v1 = sa.Table(
    "model_versions", _v1_metadata,
    sa.Column("model", sa.String(128), sa.ForeignKey("models.name"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("manifest_json", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


_deployments_v1 = sa.Table(
    "deployments", _v1_metadata,
    sa.Column("deployment_id", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("selector", sa.Text),
    sa.ForeignKeyConstraint(["model", "version"], ["model_versions.model", "model_versions.version"]),
)

_CREATED = (_models_v1, _model_versions_v1, _deployments_v1, _devices_v1, _telemetry_v1)


def upgrade() -> None:
    for table in _CREATED:
        op.execute(CreateTable(table))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            op.execute(CreateIndex(index))


def downgrade() -> None:
    refuse_loss(revision, [
        Loss("models", "registered models"),
        Loss("model_versions", "registered model versions"),
        Loss("deployments", "deployments"),
        Loss("devices", "devices and their reported state"),
        Loss("telemetry", "telemetry records"),
    ])
    for table in reversed(_CREATED):
        op.drop_table(table.name)
