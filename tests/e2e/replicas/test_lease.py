"""The decider lease (controller/app/lease.py) on real PostgreSQL, and on SQLite."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from controller.app.lease import Lease
from controller.storage import migrator
from controller.storage.db import Database


def test_sqlite_single_process_always_holds_the_lease(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "c.sqlite"))
    migrator.upgrade(db)
    lease = Lease(db)
    asyncio.run(lease.start())
    assert lease.held and lease.current_term() == 1
    asyncio.run(lease.stop())
    db.dispose()


def test_renewal_slower_than_half_the_lease_is_refused(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "c.sqlite"))
    with pytest.raises(ValueError, match="renew at least twice"):
        Lease(db, lease_s=2.0, renew_s=1.5)
    db.dispose()


def test_one_holder_at_a_time_and_takeover_after_the_holder_dies(pg_url: str) -> None:
    dbs = [Database(pg_url), Database(pg_url)]
    migrator.upgrade(dbs[0])

    async def scenario() -> None:
        a = Lease(dbs[0], holder="a", lease_s=1.0, renew_s=0.25)
        b = Lease(dbs[1], holder="b", lease_s=1.0, renew_s=0.25)
        await a.start()
        await b.start()
        try:
            await asyncio.sleep(0.6)  # several renewals each
            assert a.held and not b.held
            assert a.current_term() == 1 and b.current_term() is None
            # "a" dies: its renewals stop, nothing is released
            assert a._task is not None
            a._task.cancel()
            died = time.monotonic()
            while not b.held:
                assert time.monotonic() - died < 5, "b did not take over"
                await asyncio.sleep(0.05)
            assert time.monotonic() - died >= 0.5  # not before a's row expired
            # a stopped acting by itself before b could take over
            assert not a.held
            assert await a.renew_once() is False
            row = await asyncio.to_thread(b.store.read, "decider")
            assert row is not None and row["holder"] == "b" and row["term"] == 2
            # a graceful stop hands over at once
            await b.stop()
            assert await a.renew_once() is True and a.held and a.term == 2
        finally:
            a._task = None
            await a.stop()
            await b.stop()

    try:
        asyncio.run(scenario())
    finally:
        for db in dbs:
            db.dispose()
