"""What a downgrade checks before it drops something: the rows it would delete. A downgrade that
would lose data refuses, naming the rows, and leaves the database as it was (every step runs in
the one transaction of :func:`controller.storage.migrator.downgrade`)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from alembic import context, op

from controller.errors import EdgewiseError


class LossyDowngrade(EdgewiseError):
    """A downgrade would delete rows the older schema has no place for."""


@dataclass(frozen=True)
class Loss:
    table: str
    what: str  # what the rows are, for the operator
    where: str = ""  # SQL condition picking the rows that would be lost; "" = every row


def refuse_loss(revision: str, losses: list[Loss]) -> None:
    """Raise :class:`LossyDowngrade` if any of ``losses`` has a row. Offline SQL cannot look at
    the data, so there the check is left to whoever runs the script (`edgewise db downgrade
    --sql` says so)."""
    if context.is_offline_mode():
        return
    conn = op.get_bind()
    found = []
    for loss in losses:
        query = f"SELECT count(*) FROM {loss.table}" + (f" WHERE {loss.where}" if loss.where else "")
        rows = conn.execute(sa.text(query)).scalar_one()
        if rows:
            found.append(f"{rows} row(s) of {loss.table} ({loss.what})")
    if found:
        raise LossyDowngrade(
            f"downgrading below revision {revision} would delete {'; '.join(found)}; nothing "
            "was changed: delete or export those rows first if they may go")
