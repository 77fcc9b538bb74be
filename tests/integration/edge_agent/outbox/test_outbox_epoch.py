"""The outbox epoch: drawn once per file, kept across reopen, 0 for files from before epochs;
discard() removes undeliverable records as counted drops."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge_agent.outbox import MAX_EPOCH, TelemetryOutbox, move_aside


def test_a_new_file_gets_a_random_epoch_that_survives_reopening(tmp_path: Path) -> None:
    with TelemetryOutbox(tmp_path / "a.sqlite") as a:
        epoch = a.epoch
        a.append_many([{"kind": "error", "ts": 1.0}])
    assert 1 <= epoch <= MAX_EPOCH
    with TelemetryOutbox(tmp_path / "a.sqlite") as again:
        assert again.epoch == epoch
    with TelemetryOutbox(tmp_path / "b.sqlite") as other:
        assert other.epoch != epoch


def test_a_replaced_file_restarts_seq_under_a_new_epoch(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with TelemetryOutbox(path) as first:
        assert first.append_many([{"kind": "error", "ts": 1.0}] * 3) == [1, 2, 3]
        old_epoch = first.epoch
    move_aside(path, "test")
    with TelemetryOutbox(path) as second:
        assert second.append_many([{"kind": "error", "ts": 2.0}]) == [1]
        assert second.epoch != old_epoch


def test_a_file_from_before_epochs_keeps_epoch_zero(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with TelemetryOutbox(path) as box:
        box.append_many([{"kind": "error", "ts": 1.0}])
    conn = sqlite3.connect(path)  # what an agent before epochs wrote: no 'epoch' row
    conn.execute("DELETE FROM outbox_meta WHERE key = 'epoch'")
    conn.commit()
    conn.close()
    with TelemetryOutbox(path) as box:
        assert box.epoch == 0
        assert box.stats().pending == 1
    with TelemetryOutbox(path) as box:
        assert box.epoch == 0


def test_discard_counts_the_records_as_dropped(tmp_path: Path) -> None:
    with TelemetryOutbox(tmp_path / "d.sqlite") as box:
        box.append_many([{"kind": "error", "ts": float(i)} for i in range(5)])
        assert box.discard(2, 3) == 2
        stats = box.stats()
        assert stats.pending == 3 and stats.dropped_total == 2 and stats.acked_total == 0
        assert [r["seq"] for r in box.next_batch()] == [1, 4, 5]
    with TelemetryOutbox(tmp_path / "d.sqlite") as box:
        assert box.stats().dropped_total == 2


def test_drop_oldest_spares_records_in_flight_while_others_can_go(tmp_path: Path) -> None:
    from edge_agent.outbox import OverflowPolicy

    with TelemetryOutbox(tmp_path / "f.sqlite", max_records=5,
                         overflow=OverflowPolicy.DROP_OLDEST) as box:
        box.append_many([{"kind": "error", "ts": float(i)} for i in range(5)])  # seqs 1..5
        # 1..2 were sent and await their ack: 3, 4 and 5 are the oldest that may go
        box.append_many([{"kind": "error", "ts": 9.0}] * 3, in_flight=(1, 2))
        assert [r["seq"] for r in box.next_batch()] == [1, 2, 6, 7, 8]
        # everything stored is in flight: the new records are the ones not kept
        box.append_many([{"kind": "error", "ts": 9.0}] * 2, in_flight=(1, 8))
        assert [r["seq"] for r in box.next_batch()] == [1, 2, 6, 7, 8]
        assert box.stats().dropped_total == 5
    # reopened with a smaller bound: in-flight records go too when nothing else is left
    with TelemetryOutbox(tmp_path / "f.sqlite", max_records=2,
                         overflow=OverflowPolicy.DROP_OLDEST) as box:
        box.append_many([{"kind": "error", "ts": 9.0}], in_flight=(1, 8))
        assert [r["seq"] for r in box.next_batch()] == [7, 8]
        assert box.stats().dropped_total == 9
