"""Per-device seal counters, kept in the database (table ``seal_counters``).

Every signed desired state carries a seal with the device's next counter
(:mod:`edgewise_wire.seal`); the device refuses a counter not above the highest it accepted. The
next counter is ``max(highest issued + 1, now in milliseconds)``: strictly increasing per device
whatever the clock does, and still above what devices accepted if the database is restored from
an old backup or rebuilt (as long as the clock is right), where a plain ``+ 1`` would start
below and every device would refuse the controller until its counters caught up.

Three statements per 500 devices inside one transaction: on PostgreSQL the update's row locks
order two replicas issuing for the same device, so no counter is issued twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from controller.storage.db import Database
from controller.storage.tables import seal_counters

_CHUNK = 500  # well under every backend's bind-parameter limit


class SealCounters:
    def __init__(self, db: Database) -> None:
        self.db = db

    def next(self, device_ids: Sequence[str], now: float) -> dict[str, int]:
        """The next counter of each device (stored before it is returned)."""
        floor = int(now * 1000)
        out: dict[str, int] = {}
        table = seal_counters
        ids = list(dict.fromkeys(device_ids))
        with self.db.write() as conn:
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i:i + _CHUNK]
                conn.execute(self.db.insert_ignore(table), [
                    {"device_id": d, "counter": floor - 1, "issued_at": now} for d in chunk])
                # the row locks taken here keep another replica out until this commits
                conn.execute(table.update().where(table.c.device_id.in_(chunk)).values(
                    counter=sa.case((table.c.counter + 1 > floor, table.c.counter + 1),
                                    else_=floor),
                    issued_at=now))
                out.update((row.device_id, int(row.counter)) for row in conn.execute(
                    sa.select(table.c.device_id, table.c.counter)
                    .where(table.c.device_id.in_(chunk))))
        return out

    def highest(self, device_id: str) -> int | None:
        with self.db.read() as conn:
            value = conn.execute(sa.select(seal_counters.c.counter)
                                 .where(seal_counters.c.device_id == device_id)).scalar()
        return int(value) if value is not None else None
