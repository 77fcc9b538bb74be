"""TelemetryOutbox against real SQLite files: order, acks, bounds, restarts, crashes, full disk."""

from __future__ import annotations

import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent.outbox import (
    OutboxCorruptError,
    OutboxError,
    OutboxFullError,
    OutboxStats,
    OverflowPolicy,
    TelemetryOutbox,
    move_aside,
)
from tests.harness.paths import REPO_ROOT


def recs(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"i": i, "ts": 1.7e9 + i, "device": "pi-01", "score": 0.5} for i in range(start, start + n)
    ]


def drain_all(box: TelemetryOutbox) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = 0
    while batch := box.next_batch(100, after_seq=after):
        out.extend(batch)
        after = batch[-1]["seq"]
    return out


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite3"


def test_append_returns_increasing_seqs_and_records_round_trip(db: Path) -> None:
    with TelemetryOutbox(db) as box:
        a = box.append_many(recs(3))
        b = box.append_many(recs(2, start=3))
        assert a == [1, 2, 3] and b == [4, 5]
        assert box.append_many([]) == []
        got = drain_all(box)
        assert [r["seq"] for r in got] == [1, 2, 3, 4, 5]
        assert [r["i"] for r in got] == [0, 1, 2, 3, 4]
        assert got[0] == {"i": 0, "ts": 1.7e9, "device": "pi-01", "score": 0.5, "seq": 1}
        assert box.stats().pending == 5 and box.stats().last_seq == 5


def test_input_records_are_not_mutated_and_stored_without_seq(db: Path) -> None:
    records = recs(2)
    with TelemetryOutbox(db) as box:
        box.append_many(records)
    assert "seq" not in records[0]
    body = sqlite3.connect(db).execute("SELECT body FROM outbox WHERE seq = 1").fetchone()[0]
    assert body == '{"i":0,"ts":1700000000.0,"device":"pi-01","score":0.5}'  # compact


def test_seqs_never_reused_after_ack_and_restart(db: Path) -> None:
    with TelemetryOutbox(db) as box:
        assert box.append_many(recs(4)) == [1, 2, 3, 4]
        assert box.ack(1, 4) == 4
        assert box.stats().pending == 0
    with TelemetryOutbox(db) as box:
        assert box.stats().last_seq == 4
        assert box.append_many(recs(2)) == [5, 6]
        box.ack(5, 6)
    with TelemetryOutbox(db) as box:
        assert box.append_many(recs(1)) == [7]


def test_next_batch_order_limit_and_after_seq(db: Path) -> None:
    with TelemetryOutbox(db) as box:
        box.append_many(recs(10))
        assert [r["seq"] for r in box.next_batch(3)] == [1, 2, 3]
        assert [r["seq"] for r in box.next_batch(3, after_seq=3)] == [4, 5, 6]
        assert [r["seq"] for r in box.next_batch(100, after_seq=8)] == [9, 10]
        assert box.next_batch(5, after_seq=10) == []
        # next_batch does not consume
        assert [r["seq"] for r in box.next_batch(2)] == [1, 2]


def test_ack_deletes_exactly_the_range(db: Path) -> None:
    with TelemetryOutbox(db) as box:
        box.append_many(recs(10))
        assert box.ack(4, 6) == 3
        assert [r["seq"] for r in drain_all(box)] == [1, 2, 3, 7, 8, 9, 10]
        assert box.ack(4, 6) == 0  # twice is harmless
        assert box.ack(6, 4) == 0  # empty range
        assert box.ack(1, 1) == 1
        assert box.ack(0, 100) == 6
        st = box.stats()
        assert st.pending == 0 and st.acked_total == 10


def test_restart_keeps_pending_dropped_and_acked(db: Path) -> None:
    with TelemetryOutbox(db, max_records=5) as box:
        box.append_many(recs(5))
        box.append_many(recs(3, start=5))  # drops seqs 1-3
        assert box.ack(6, 7) == 2
        before = box.stats()
    assert before == OutboxStats(pending=3, dropped_total=3, last_seq=8, acked_total=2)
    with TelemetryOutbox(db, max_records=5) as box:
        assert box.stats() == before
        assert [r["seq"] for r in drain_all(box)] == [4, 5, 8]
        assert [r["i"] for r in drain_all(box)] == [3, 4, 7]


def test_pending_counter_matches_table_with_holes(db: Path) -> None:
    with TelemetryOutbox(db, max_records=20) as box:
        box.append_many(recs(15))
        box.ack(3, 5)
        box.ack(10, 11)
        box.append_many(recs(15))  # 25 > 20: drops the 5 oldest remaining: 1, 2, 6, 7, 8
        count = box._conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        assert box.stats().pending == count == 20
        assert [r["seq"] for r in box.next_batch(3)] == [9, 12, 13]
        assert box.stats().dropped_total == 5


def test_drop_oldest_keeps_newest_and_counts_exactly(db: Path) -> None:
    with TelemetryOutbox(db, max_records=10, overflow=OverflowPolicy.DROP_OLDEST) as box:
        assert box.append_many(recs(7)) == list(range(1, 8))
        assert box.append_many(recs(7, start=7)) == list(range(8, 15))
        assert box.stats().dropped_total == 4
        assert [r["i"] for r in drain_all(box)] == list(range(4, 14))
        # A batch larger than the bound: only its newest max_records are kept.
        seqs = box.append_many(recs(25, start=100))
        assert len(seqs) == 10
        got = drain_all(box)
        assert [r["i"] for r in got] == list(range(115, 125))
        assert [r["seq"] for r in got] == seqs
        st = box.stats()
        assert st.pending == 10 and st.dropped_total == 4 + 10 + 15


def test_refuse_new_keeps_oldest_and_counts_exactly(db: Path) -> None:
    with TelemetryOutbox(db, max_records=10, overflow=OverflowPolicy.REFUSE_NEW) as box:
        assert box.append_many(recs(7)) == list(range(1, 8))
        assert box.append_many(recs(7, start=7)) == [8, 9, 10]
        assert box.stats().dropped_total == 4
        assert box.append_many(recs(3, start=50)) == []
        assert box.stats().dropped_total == 7
        assert [r["i"] for r in drain_all(box)] == list(range(10))
        assert box.ack(1, 3) == 3
        assert box.append_many(recs(5, start=60)) == [11, 12, 13]
        st = box.stats()
        assert st.pending == 10 and st.dropped_total == 9
        assert [r["i"] for r in drain_all(box)][-3:] == [60, 61, 62]


def test_reopen_with_smaller_bound(db: Path) -> None:
    with TelemetryOutbox(db) as box:
        box.append_many(recs(10))
    with TelemetryOutbox(db, max_records=4, overflow=OverflowPolicy.REFUSE_NEW) as box:
        assert box.append_many(recs(2)) == []  # refused, nothing deleted
        assert box.stats().pending == 10 and box.stats().dropped_total == 2
    with TelemetryOutbox(db, max_records=4, overflow=OverflowPolicy.DROP_OLDEST) as box:
        assert box.append_many(recs(1, start=99)) == [11]
        assert [r["seq"] for r in drain_all(box)] == [8, 9, 10, 11]
        assert box.stats().dropped_total == 2 + 7


def test_drops_are_logged_rate_limited(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    caplog.set_level(logging.WARNING, logger="edgewise.agent.outbox")
    box = TelemetryOutbox(db, max_records=2, clock=lambda: now[0])
    box.append_many(recs(3))  # 1 dropped: logged at once
    assert len(caplog.records) == 1 and "dropped 1 records" in caplog.records[0].getMessage()
    box.append_many(recs(2))  # 2 more, within 10 s: held back
    now[0] += 5
    box.append_many(recs(3))  # 3 more
    assert len(caplog.records) == 1
    now[0] += 6
    box.append_many(recs(1))  # 1 more, 11 s after the first line: the count since then
    assert len(caplog.records) == 2
    assert "dropped 6 records since the last report" in caplog.records[1].getMessage()
    box.append_many(recs(2))  # 2 more, reported at close
    box.close()
    assert len(caplog.records) == 3 and "dropped 2 records" in caplog.records[2].getMessage()
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_unencodable_record_stores_nothing(db: Path) -> None:
    with TelemetryOutbox(db) as box:
        with pytest.raises(TypeError):
            box.append_many([{"ok": 1}, {"bad": object()}])
        st = box.stats()
        assert st.pending == 0 and st.dropped_total == 0 and st.last_seq == 0
        with pytest.raises(TypeError, match="dicts"):
            box.append_many([{"ok": 1}, [1, 2]])  # type: ignore[list-item]
        assert box.stats().pending == 0
        assert box.append_many(recs(1)) == [1]


def test_full_disk_raises_counts_and_recovers_after_ack(db: Path) -> None:
    big = [{"i": i, "pad": "x" * 200} for i in range(50)]
    box = TelemetryOutbox(db, max_db_pages=40)
    stored = 0
    with pytest.raises(OutboxFullError, match="full"):
        for _ in range(100):
            stored += len(box.append_many(big))
    assert isinstance(OutboxFullError("x"), OutboxError)
    st = box.stats()
    assert st.pending == stored > 0
    assert st.dropped_total == 50
    assert len(drain_all(box)) == stored  # the failed batch left nothing behind
    # Still usable: free space by acking, then appends succeed again.
    assert box.ack(1, st.last_seq) == stored
    seqs = box.append_many(big)
    assert len(seqs) == 50 and seqs[0] > st.last_seq
    box.close()
    with TelemetryOutbox(db) as box2:  # the drop count was persisted
        assert box2.stats().dropped_total == 50
        assert box2.stats().pending == 50


def test_corrupt_file_raises_outbox_error(db: Path) -> None:
    db.write_bytes(os.urandom(8192))
    with pytest.raises(OutboxCorruptError, match=str(db)) as info:
        TelemetryOutbox(db)
    assert isinstance(info.value, OutboxError)
    db.write_bytes(b"this is not sqlite " * 300)
    with pytest.raises(OutboxError, match="not a valid SQLite database"):
        TelemetryOutbox(db)


def test_move_aside_takes_the_wal_along(db: Path) -> None:
    wal = db.with_name(db.name + "-wal")
    with TelemetryOutbox(db) as box:
        box.append_many(recs(3))
        stale_wal = wal.read_bytes()
    db.write_bytes(b"garbage" * 1000)
    with pytest.raises(OutboxCorruptError):
        TelemetryOutbox(db)
    wal.write_bytes(stale_wal)  # e.g. left behind by a crash
    aside = move_aside(db, tag="t1")
    assert aside.name == "outbox.sqlite3.corrupt-t1"
    assert aside.with_name(aside.name + "-wal").read_bytes() == stale_wal
    assert aside.read_bytes() == b"garbage" * 1000
    assert not db.exists() and not wal.exists()
    with TelemetryOutbox(db) as box:
        assert box.stats() == OutboxStats(pending=0, dropped_total=0, last_seq=0, acked_total=0)
        assert box.append_many(recs(1)) == [1]


def test_newer_schema_version_is_refused(db: Path) -> None:
    TelemetryOutbox(db).close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(OutboxError, match="schema version 99"):
        TelemetryOutbox(db)


def test_use_after_close_raises_outbox_error(db: Path) -> None:
    box = TelemetryOutbox(db)
    box.close()
    box.close()  # idempotent
    with pytest.raises(OutboxError, match="closed"):
        box.append_many(recs(1))


def test_invalid_max_records(db: Path) -> None:
    with pytest.raises(ValueError):
        TelemetryOutbox(db, max_records=0)


BATCH = 50

# Appends numbered batches of BATCH records forever, continuing the numbering of the file.
CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from edge_agent.outbox import TelemetryOutbox

    box = TelemetryOutbox(Path(sys.argv[1]))
    size = int(sys.argv[2])
    b = box.stats().pending // size
    start = b
    while True:
        box.append_many([{"batch": b, "i": i, "pad": "p" * 100} for i in range(size)])
        b += 1
        if b == start + 20:
            print("ready", flush=True)
    """
)


def check_whole_batches(db: Path) -> int:
    with TelemetryOutbox(db) as box:
        rows = drain_all(box)
        st = box.stats()
    assert st.pending == len(rows)
    assert len(rows) % BATCH == 0
    n_batches = len(rows) // BATCH
    # A prefix: batches 0..k-1, each whole, in order, seqs consecutive (nothing acked or dropped).
    assert [r["batch"] for r in rows] == [b for b in range(n_batches) for _ in range(BATCH)]
    assert [r["i"] for r in rows] == list(range(BATCH)) * n_batches
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert st.last_seq == len(rows)  # an uncommitted batch consumed no seq
    return n_batches


def test_sigkill_leaves_whole_committed_batches(db: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    n_batches = 0
    for _ in range(3):  # kill, reopen and go on: each round starts from the crashed file
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db), str(BATCH)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            # Let it run on so the kill lands at an arbitrary point, likely inside a transaction.
            time.sleep(random.uniform(0.0, 0.05))
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=10)
            assert proc.stdout is not None
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        now = check_whole_batches(db)
        assert now >= n_batches + 20
        n_batches = now

    with TelemetryOutbox(db) as box:  # usable after the crashes, seqs still increasing
        assert box.append_many(recs(1)) == [n_batches * BATCH + 1]


class FlakyConnection:
    """Wraps a sqlite3 connection; makes chosen statements fail as on a full disk."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real
        self.fail_inserts = False
        self.fail_meta = False

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if self.fail_meta and sql.startswith("UPDATE outbox_meta"):
            raise sqlite3.OperationalError("database or disk is full")
        return self.real.execute(sql, *args)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        if self.fail_inserts:
            raise sqlite3.OperationalError("database or disk is full")
        return self.real.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_drop_count_kept_in_memory_when_it_cannot_be_persisted(db: Path) -> None:
    box = TelemetryOutbox(db)
    box.append_many(recs(3))
    flaky = FlakyConnection(box._conn)
    box._conn = flaky  # type: ignore[assignment]
    flaky.fail_inserts = flaky.fail_meta = True
    with pytest.raises(OutboxFullError):
        box.append_many(recs(7))
    assert box.stats().dropped_total == 7  # in memory
    meta = "SELECT value FROM outbox_meta WHERE key = 'dropped_total'"
    assert sqlite3.connect(db).execute(meta).fetchone()[0] == 0
    flaky.fail_inserts = flaky.fail_meta = False
    assert box.ack(1, 1) == 1  # the next successful write persists it
    assert sqlite3.connect(db).execute(meta).fetchone()[0] == 7
    box.close()
    with TelemetryOutbox(db) as box2:
        assert box2.stats() == OutboxStats(pending=2, dropped_total=7, last_seq=3, acked_total=1)
