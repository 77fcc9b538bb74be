"""devices: reported staged and previous slots

The artifact a device reports staged in its standby slot and the model kept in its previous slot
(instant rollback): nullable columns of ``devices``. ADD COLUMN is transactional on both backends,
so concurrent replicas stay serialised by the migration lock.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLUMNS = tuple((f"{slot}_{column}", kind) for slot in ("staged", "previous")
                 for column, kind in (("model", "VARCHAR(128)"), ("version", "INTEGER"),
                                      ("sha256", "VARCHAR(64)")))


def upgrade() -> None:
    for name, kind in _COLUMNS:
        op.execute(f"ALTER TABLE devices ADD COLUMN {name} {kind}")


def downgrade() -> None:
    # A copy of what each device reports, rewritten by its every report: the devices still hold
    # it, nothing is lost. (DROP COLUMN: SQLite 3.35 or later.)
    for name, _kind in reversed(_COLUMNS):
        op.execute(f"ALTER TABLE devices DROP COLUMN {name}")

