"""Per-device seal counters (controller.fleet.seal_counters) on SQLite and PostgreSQL: strictly
increasing per device whatever the clock does, never issued twice, kept across restarts."""

from __future__ import annotations

import threading

from controller.fleet.seal_counters import SealCounters
from controller.storage.db import Database

NOW = 1_750_000_000.0


def test_counters_increase_per_device_even_when_the_clock_goes_back(db: Database) -> None:
    counters = SealCounters(db)
    first = counters.next(["a", "b"], NOW)
    assert first == {"a": int(NOW * 1000), "b": int(NOW * 1000)}  # from the clock
    again = counters.next(["a"], NOW - 3600)  # the clock went back an hour
    assert again["a"] == first["a"] + 1
    later = counters.next(["a", "b"], NOW + 10)
    assert later == {"a": int((NOW + 10) * 1000), "b": int((NOW + 10) * 1000)}
    assert SealCounters(db).highest("a") == later["a"]  # kept in the database
    assert counters.highest("nobody") is None


def test_concurrent_issuers_never_hand_out_one_counter_twice(db: Database) -> None:
    counters = SealCounters(db)
    issued: list[int] = []
    lock = threading.Lock()

    def issue() -> None:
        for _ in range(10):
            value = counters.next(["dev"], NOW)["dev"]
            with lock:
                issued.append(value)

    threads = [threading.Thread(target=issue) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(issued) == len(set(issued)) == 30
