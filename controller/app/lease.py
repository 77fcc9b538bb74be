"""One decision-maker among several controller replicas: a lease row in the database.

The rollout runner and the alert evaluator act only on the replica that holds the lease
``"decider"``. The holder renews it every ``renew_s``; if it dies, its row expires after
``lease_s`` and the first other replica to try takes it over. Expiry is judged on the
database's clock, so the replicas' clocks need not agree. A holder that cannot renew (database
unreachable) stops acting by itself once ``lease_s - renew_s`` has passed since its last
successful renewal, before any other replica can take the lease over.

On SQLite there is one process per database file: it always holds the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import Counter

import sqlalchemy as sa

from controller.storage.db import Database
from controller.storage.tables import leases

log = logging.getLogger("edgewise.controller.lease")

DECIDER = "decider"


def new_holder_id() -> str:
    """A name unique to this process: host, pid and a random part (pids repeat in containers)."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class LeaseStore:
    """The database side: take or renew, release, read. Synchronous; call via a thread."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _now(self, conn: sa.Connection) -> float:
        if self.db.dialect_name == "postgresql":
            return float(conn.execute(sa.text(
                "SELECT extract(epoch FROM clock_timestamp())")).scalar_one())
        return time.time()

    def acquire(self, name: str, holder: str, lease_s: float) -> bool:
        """Take the lease if free or expired, or renew it if ``holder`` has it. True if held."""
        with self.db.write() as conn:
            now = self._now(conn)
            conn.execute(self.db.insert_ignore(leases).values(
                name=name, holder=holder, expires_at=now + lease_s, acquired_at=now, term=1))
            row = conn.execute(sa.select(leases).where(leases.c.name == name)
                               .with_for_update()).one()
            if row.holder == holder:
                conn.execute(leases.update().where(leases.c.name == name)
                             .values(expires_at=now + lease_s))
                return True
            if row.expires_at > now:
                return False
            conn.execute(leases.update().where(leases.c.name == name).values(
                holder=holder, expires_at=now + lease_s, acquired_at=now, term=row.term + 1))
            log.warning("lease %r taken over from %s (expired %.1f s ago)", name, row.holder,
                        now - row.expires_at)
            return True

    def release(self, name: str, holder: str) -> None:
        with self.db.write() as conn:
            conn.execute(leases.update().where(leases.c.name == name, leases.c.holder == holder)
                         .values(expires_at=0.0))

    def read(self, name: str) -> dict[str, object] | None:
        with self.db.read() as conn:
            row = conn.execute(sa.select(leases).where(leases.c.name == name)).first()
            return None if row is None else dict(row._mapping)


class Lease:
    """This replica's view of one lease, kept by a background task."""

    def __init__(self, db: Database, name: str = DECIDER, *, holder: str | None = None,
                 lease_s: float = 5.0, renew_s: float = 1.0) -> None:
        if renew_s * 2 > lease_s:
            raise ValueError(f"lease renewal every {renew_s} s is too slow for a {lease_s} s "
                             "lease: renew at least twice per lease")
        self.store = LeaseStore(db)
        self.name = name
        self.holder = holder or new_holder_id()
        self.lease_s = lease_s
        self.renew_s = renew_s
        self.always = db.dialect_name == "sqlite"
        self.term = 1 if self.always else 0  # counts this replica's acquisitions
        self.stats: Counter[str] = Counter()
        self._valid_until = float("inf") if self.always else 0.0  # monotonic clock
        self._task: asyncio.Task[None] | None = None

    @property
    def held(self) -> bool:
        return time.monotonic() < self._valid_until

    def current_term(self) -> int | None:
        """The number of this holding (changes with each acquisition), or None if not held."""
        return self.term if self.held else None

    async def start(self) -> None:
        if self.always:
            return
        await self.renew_once()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self.held:
            self._valid_until = 0.0
            with contextlib.suppress(Exception):  # a graceful stop hands over at once
                await asyncio.to_thread(self.store.release, self.name, self.holder)

    async def renew_once(self) -> bool:
        was = self.held
        started = time.monotonic()
        try:
            got = await asyncio.to_thread(self.store.acquire, self.name, self.holder,
                                          self.lease_s)
        except Exception:
            self.stats["renew_errors"] += 1
            log.exception("lease %r: cannot renew; acting until it runs out", self.name)
            return self.held
        if got:
            # stop acting a renewal interval before the row expires for the others
            self._valid_until = started + self.lease_s - self.renew_s
            if not was:
                self.term += 1
                self.stats["acquired"] += 1
                log.info("lease %r acquired by %s: this replica now runs rollouts and alerts",
                         self.name, self.holder)
        else:
            if was:
                self.stats["lost"] += 1
                log.warning("lease %r lost by %s", self.name, self.holder)
            self._valid_until = 0.0
        return got

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.renew_s)
            await self.renew_once()
