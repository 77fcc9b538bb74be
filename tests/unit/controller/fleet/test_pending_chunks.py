"""The chunk server's queue: lowest index first, each index once while it waits."""

from controller.fleet.chunk_server import PendingChunks


def test_indices_come_out_lowest_first_and_once() -> None:
    pending = PendingChunks()
    pending.add_range(5, 8)
    pending.add_range(0, 3)
    pending.add_range(1, 7)  # overlaps what already waits
    assert len(pending) == 8
    assert [pending.pop_lowest() for _ in range(8)] == list(range(8))
    assert not pending


def test_an_index_sent_already_can_be_queued_again() -> None:
    pending = PendingChunks()
    pending.add_range(0, 2)
    assert pending.pop_lowest() == 0
    pending.add(0)  # a late agent asks for it again after it went out
    assert [pending.pop_lowest(), pending.pop_lowest()] == [0, 1]
    assert not pending
