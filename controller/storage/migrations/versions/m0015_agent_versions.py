"""agent versions

One row per registered agent bundle (a prepared agent archive for the devices' launcher): its
version label, the sha256 of the archive in the artifact store, and its manifest.
"""

from __future__ import annotations

from alembic import op

from controller.storage.migrations.guards import Loss, refuse_loss

revision = "0015"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE agent_versions (
        version VARCHAR(64) NOT NULL,
        sha256 VARCHAR(64) NOT NULL,
        size BIGINT NOT NULL,
        manifest_json TEXT NOT NULL,
        created_at FLOAT NOT NULL,
        PRIMARY KEY (version))""")
    op.execute("CREATE INDEX ix_agent_versions_sha256 ON agent_versions (sha256)")


def downgrade() -> None:
    refuse_loss(revision, [Loss("agent_versions", "the registered agent versions")])
    op.drop_table("agent_versions")
