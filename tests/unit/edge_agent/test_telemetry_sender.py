"""The telemetry sender's core (edge_agent/telemetry/sender.py): which batches go, which acks
count. Pure: no broker, no outbox file."""

from __future__ import annotations

import pytest

from edge_agent.outbox import OutboxStats
from edge_agent.telemetry.sender import (
    ApplyAck,
    Idle,
    InFlight,
    Read,
    RefuseAck,
    ReportDrops,
    SendBatches,
    TelemetrySender,
)


def stats(pending: int, last_seq: int, dropped_total: int = 0) -> OutboxStats:
    return OutboxStats(pending=pending, dropped_total=dropped_total, last_seq=last_seq,
                       acked_total=0)


def sender(**kwargs: float) -> TelemetrySender:
    settings = {"batch_size": 10, "max_inflight": 2, "ack_timeout_s": 5.0, **kwargs}
    return TelemetrySender(batch_size=int(settings["batch_size"]),
                           max_inflight=int(settings["max_inflight"]),
                           ack_timeout_s=settings["ack_timeout_s"])


def test_batches_go_while_the_window_has_room_each_after_the_last_sent() -> None:
    s = sender()
    assert s.poll(0.0, stats(pending=25, last_seq=25)) == SendBatches()
    assert s.next_read() == Read(after_seq=0, limit=10)
    s.sent(1, 10, 0.0, 0)
    assert s.next_read() == Read(after_seq=10, limit=10)
    s.sent(11, 20, 0.0, 0)
    assert s.next_read() is None  # two in flight: the window is full
    assert s.in_flight() == (1, 20)
    assert s.poll(1.0, stats(pending=25, last_seq=25)) == SendBatches()
    assert s.poll(1.0, stats(pending=25, last_seq=20)) == Idle()  # nothing unsent


def test_nothing_stored_or_everything_sent_is_idle() -> None:
    s = sender()
    assert s.poll(0.0, stats(pending=0, last_seq=0)) == Idle()
    assert s.in_flight() is None
    s.sent(1, 5, 0.0, 0)
    assert s.poll(0.0, stats(pending=5, last_seq=5)) == Idle()


def test_an_ack_frees_its_batch_and_a_timeout_or_reconnect_sends_everything_again() -> None:
    s = sender()
    s.sent(1, 10, 0.0, 3)
    s.sent(11, 20, 1.0, 3)
    assert s.on_ack(1, 10, epoch=7, outbox_epoch=7) == ApplyAck(1, 10)
    s.acked(1, 10)
    assert s.inflight == {11: InFlight(20, 1.0, 3)} and s.dropped_reported == 3
    # 11..20 unacknowledged for longer than the timeout: from the oldest again
    assert s.poll(6.5, stats(pending=10, last_seq=20)) == SendBatches()
    assert s.inflight == {} and s.next_read() == Read(after_seq=0, limit=10)
    s.sent(11, 20, 6.5, 3)
    s.reconnected()
    assert s.inflight == {} and s.sent_upto == 0


def test_a_late_ack_of_a_shorter_batch_keeps_the_longer_one_in_flight() -> None:
    s = sender()
    s.sent(1, 20, 0.0, 0)
    s.acked(1, 10)  # the ack of a batch 1..10 sent before a reconnect
    assert s.inflight == {1: InFlight(20, 0.0, 0)}
    s.acked(1, 20)
    assert s.inflight == {}


def test_an_ack_for_another_outbox_is_refused() -> None:
    s = sender()
    s.sent(1, 10, 0.0, 0)
    decision = s.on_ack(1, 10, epoch=8, outbox_epoch=7)
    assert isinstance(decision, RefuseAck) and "epoch 8" in decision.detail
    # an ack naming no epoch could be for any outbox: refused as well
    refused = s.on_ack(1, 10, epoch=None, outbox_epoch=7)
    assert isinstance(refused, RefuseAck) and "no epoch" in refused.detail
    assert s.on_ack(1, 10, epoch=7, outbox_epoch=7) == ApplyAck(1, 10)


def test_drops_no_batch_would_carry_are_reported_in_an_empty_batch() -> None:
    s = sender()
    assert s.drops_unreported(4)
    assert s.poll(0.0, stats(pending=0, last_seq=12, dropped_total=4)) == ReportDrops(12, 4)
    s.drops_sent(12, 0.0, 4)
    assert s.poll(0.0, stats(pending=0, last_seq=12, dropped_total=4)) == Idle()  # in flight
    s.acked(12, 12)
    assert not s.drops_unreported(4)
    assert s.poll(0.0, stats(pending=0, last_seq=12, dropped_total=4)) == Idle()
    # nothing was ever stored: the next batch will say it
    assert sender().poll(0.0, stats(pending=0, last_seq=0, dropped_total=9)) == Idle()


def test_a_window_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError):
        sender(max_inflight=0)
