"""The feedback memory (edge_agent.recent): one entry per call, looked up by prediction id."""

from __future__ import annotations

from edge_agent.recent import RecentPredictions


def test_ids_of_single_rows_and_batches_are_found() -> None:
    recent = RecentPredictions("b00t", capacity=100)
    recent.remember(0, ["a"], "iris", 1)
    recent.remember(1, ["b", "c", "d"], "iris", 2)
    assert recent.get("b00t-0") == ("a", "iris", 1)
    assert recent.get("b00t-1") == ("b", "iris", 2)
    assert recent.get("b00t-3") == ("d", "iris", 2)
    assert recent.get("b00t-4") is None  # not made yet
    assert len(recent) == 4


def test_foreign_and_malformed_ids_are_unknown() -> None:
    recent = RecentPredictions("b00t", capacity=100)
    recent.remember(0, [1, 2], "m", 1)
    for pid in ("other-0", "b00t-", "b00t-x", "b00t--1", "b00t-01", "b00t-1.0", "", "b00t"):
        assert recent.get(pid) is None, pid


def test_the_oldest_calls_are_forgotten_past_the_capacity() -> None:
    recent = RecentPredictions("b", capacity=10)
    n = 0
    for size in (4, 4, 4, 4, 1, 1):
        recent.remember(n, list(range(n, n + size)), "m", 1)
        n += size
    assert 10 <= len(recent) < 10 + 4
    assert recent.get("b-0") is None and recent.get("b-3") is None  # the first call is gone
    assert recent.get(f"b-{n - 1}") == (n - 1, "m", 1)
    assert recent.get("b-8") == (8, "m", 1)


def test_a_call_larger_than_the_capacity_is_kept_whole() -> None:
    recent = RecentPredictions("b", capacity=5)
    recent.remember(0, list(range(50)), "m", 1)
    assert recent.get("b-49") == (49, "m", 1) and recent.get("b-0") == (0, "m", 1)
    for n in range(50, 54):
        recent.remember(n, [n], "m", 1)
    assert recent.get("b-0") == (0, "m", 1)  # the newer calls hold fewer than 5 rows yet
    recent.remember(54, [54], "m", 1)
    assert recent.get("b-0") is None and recent.get("b-54") == (54, "m", 1)
    assert len(recent) == 5

