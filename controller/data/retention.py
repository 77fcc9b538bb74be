"""How long telemetry rows are kept: by age (days) and by count (rows), oldest first.

Only the raw ``telemetry`` table is pruned: the metrics and health windows the hot views read
are kept (they are small, one row per device and window). A ``predictions`` row counts as one
row (it stands for many predictions). Returns exactly how many rows each rule deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from controller.errors import ValidationError
from controller.storage.db import Database
from controller.storage.tables import telemetry

DAY_S = 86_400.0


@dataclass(frozen=True)
class RetentionResult:
    deleted_by_age: int
    deleted_by_rows: int
    kept: int
    cutoff_ts: float | None  # rows older than this are gone (None: nothing deleted)

    @property
    def deleted(self) -> int:
        return self.deleted_by_age + self.deleted_by_rows


def apply_retention(db: Database, *, days: float | None, max_rows: int | None,
                    now: float) -> RetentionResult:
    """Delete telemetry older than ``days`` and then, while more than ``max_rows`` rows are
    left, the oldest (by device time; rows sharing the cutoff time are kept, so at least
    ``max_rows`` remain). One transaction."""
    if days is None and max_rows is None:
        raise ValidationError("say how much to keep: days, rows or both")
    if days is not None and days < 0:
        raise ValidationError(f"days must be >= 0, got {days}")
    if max_rows is not None and max_rows < 0:
        raise ValidationError(f"rows must be >= 0, got {max_rows}")
    t = telemetry.c
    by_age = by_rows = 0
    cutoff: float | None = None
    with db.write() as conn:
        if days is not None:
            cutoff = now - days * DAY_S
            by_age = conn.execute(telemetry.delete().where(t.ts < cutoff)).rowcount
        if max_rows is not None:
            total = int(conn.execute(sa.select(sa.func.count()).select_from(telemetry))
                        .scalar_one())
            if total > max_rows:
                # the ts of the oldest row that stays
                keep_from = conn.execute(sa.select(t.ts).order_by(t.ts.desc())
                                         .offset(max_rows - 1 if max_rows else 0).limit(1)
                                         ).scalar_one()
                if max_rows == 0:
                    by_rows = conn.execute(telemetry.delete()).rowcount
                else:
                    by_rows = conn.execute(telemetry.delete().where(t.ts < keep_from)).rowcount
                    cutoff = keep_from if cutoff is None else max(cutoff, keep_from)
        kept = int(conn.execute(sa.select(sa.func.count()).select_from(telemetry)).scalar_one())
    return RetentionResult(int(by_age), int(by_rows), kept,
                           cutoff if (by_age or by_rows) else None)
