"""Telemetry windows stored once: the common body of the features' window sinks.

The telemetry store hands a feature's sink the records of one batch inside the transaction that
stores the batch. The sink turns each record into a row of its window table, keyed by device,
outbox epoch and seq, and inserts the rows; a replayed batch inserts nothing twice. A record that
does not validate is counted and logged, and the rest of the batch is still stored (its raw record
stays in the telemetry table).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from controller.storage.db import Database


@dataclass(frozen=True)
class WindowTable:
    """A table of windows keyed by (device_id, epoch, seq) and how its sink accounts for them."""

    table: sa.Table
    noun: str  # the log's "NOUN from DEVICE (seq N) not stored: why"
    invalid: type[Exception]  # what the row builder raises for a record that does not validate
    invalid_stat: str  # the stats key counting such records
    stored_stat: str  # the stats key counting rows newly stored
    log: logging.Logger


def insert_new_windows(db: Database, conn: sa.Connection, target: WindowTable, device_id: str,
                       records: Iterable[Mapping[str, Any]],
                       row: Callable[[Mapping[str, Any]], dict[str, Any]],
                       stats: Counter[str]) -> int:
    """Insert the row ``row`` builds of each valid record, inside ``conn``'s transaction, skipping
    rows already stored; return how many were new."""
    rows = []
    for record in records:
        try:
            rows.append(row(record))
        except target.invalid as exc:
            stats[target.invalid_stat] += 1
            target.log.warning("%s from %s (seq %s) not stored: %s", target.noun, device_id,
                               record.get("seq"), exc)
    if not rows:
        return 0
    stmt = db.insert_ignore(target.table).returning(target.table.c.seq)
    inserted = len(conn.execute(stmt, rows).all())
    stats[target.stored_stat] += inserted
    return inserted
