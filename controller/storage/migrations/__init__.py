"""The registered migrations, one module each (``mNNNN_name.py`` with ``VERSION``,
``DESCRIPTION`` and ``apply(conn)``), applied in order by :meth:`controller.storage.db.Database.migrate`
and recorded in ``schema_migrations``.

A migration is never edited once released: it creates exactly what it always did, from explicit
DDL or frozen copies of the tables it made, never from :mod:`controller.storage.tables` (the
current shapes). A change to the schema is a new module here plus the new shape in ``tables``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from controller.storage.migrations import (
    m0001_initial,
    m0002_rollouts,
    m0003_monitoring,
    m0004_device_history,
    m0005_leases,
    m0006_device_slots,
    m0007_watches,
    m0008_health_windows,
)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


MIGRATIONS: tuple[Migration, ...] = tuple(
    Migration(m.VERSION, m.DESCRIPTION, m.apply)
    for m in (m0001_initial, m0002_rollouts, m0003_monitoring, m0004_device_history,
              m0005_leases, m0006_device_slots, m0007_watches, m0008_health_windows))
