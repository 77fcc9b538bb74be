"""Generated event sequences through the telemetry sender's core: records stored and dropped
on overflow, batches sent, lost, delivered late and twice, acks lost, duplicated and forged
for another outbox, reconnects and ack timeouts, in any order. The outbox, the controller and
the link are small models; the shell's loop is replayed as edge_agent/telemetry/uplink.py
runs it.

Invariants: a record leaves the outbox by an ack only once the controller stored it; an ack
for another epoch, or naming none, deletes nothing; what the sender reports as in flight covers every batch of
records out; and once the link is reliable again, everything not dropped (and counted) reaches
the controller and the outbox drains.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from edge_agent.outbox import OutboxStats
from edge_agent.telemetry.sender import (
    ApplyAck,
    RefuseAck,
    ReportDrops,
    SendBatches,
    TelemetrySender,
)

EPOCH = 7
ACK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Batch:
    first: int
    last: int
    seqs: frozenset[int]  # the records it carries (an empty batch reports drops)
    dropped_total: int


@dataclass(frozen=True)
class AckMessage:
    first: int
    last: int
    epoch: int | None


class SenderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sender = TelemetrySender(batch_size=4, max_inflight=3, ack_timeout_s=ACK_TIMEOUT_S)
        self.now = 0.0
        self.connected = True
        # the outbox
        self.present: set[int] = set()
        self.last_seq = 0
        self.dropped_total = 0
        self.dropped: set[int] = set()
        # the controller and the link
        self.at_controller: set[int] = set()
        self.controller_dropped_total = 0
        self.max_dropped_sent = 0  # the highest dropped_total a batch carried
        self.to_controller: list[Batch] = []
        self.to_device: list[AckMessage] = []
        self.out: dict[int, Batch] = {}  # batches of records sent, by first seq (last send)

    # -- the outbox ------------------------------------------------------------------------------

    def stats(self) -> OutboxStats:
        return OutboxStats(len(self.present), self.dropped_total, self.last_seq, 0)

    @rule(n=st.integers(min_value=1, max_value=9))
    def records_are_stored(self, n: int) -> None:
        self.present |= set(range(self.last_seq + 1, self.last_seq + n + 1))
        self.last_seq += n

    @precondition(lambda self: self.present)
    @rule(n=st.integers(min_value=1, max_value=5))
    def the_outbox_overflows(self, n: int) -> None:
        """DROP_OLDEST: the oldest records go, those in flight last (TelemetryOutbox._append)."""
        span = self.sender.in_flight()
        order = sorted(self.present)
        if span is not None:
            order = [s for s in order if not span[0] <= s <= span[1]] + \
                [s for s in order if span[0] <= s <= span[1]]
        gone = set(order[:n])
        self.present -= gone
        self.dropped |= gone
        self.dropped_total += len(gone)

    # -- the shell ----------------------------------------------------------------------------------

    @rule()
    def the_sender_runs(self) -> None:
        """TelemetryUplink.send, with the outbox and the link as models."""
        if not self.connected:
            return
        action = self.sender.poll(self.now, self.stats())
        if isinstance(action, ReportDrops):
            assert not self.present and action.seq == self.last_seq
            self.to_controller.append(Batch(action.seq, action.seq, frozenset(),
                                            action.dropped_total))
            self.max_dropped_sent = max(self.max_dropped_sent, action.dropped_total)
            self.sender.drops_sent(action.seq, self.now, action.dropped_total)
            self.out.pop(action.seq, None)  # an earlier batch from that seq is acknowledged
            return
        if not isinstance(action, SendBatches):
            return
        while (read := self.sender.next_read()) is not None:
            seqs = sorted(s for s in self.present if s > read.after_seq)[:read.limit]
            if not seqs:
                return
            batch = Batch(seqs[0], seqs[-1], frozenset(seqs), self.dropped_total)
            self.to_controller.append(batch)
            self.out[batch.first] = batch
            self.max_dropped_sent = max(self.max_dropped_sent, batch.dropped_total)
            self.sender.sent(batch.first, batch.last, self.now, self.dropped_total)

    def apply_ack(self, ack: AckMessage) -> None:
        """TelemetryUplink.on_ack."""
        decision = self.sender.on_ack(ack.first, ack.last, ack.epoch, EPOCH)
        if ack.epoch != EPOCH:  # another outbox's, or none named: refused
            assert isinstance(decision, RefuseAck)
            return
        assert decision == ApplyAck(ack.first, ack.last)  # exactly what was acknowledged
        deleted = {s for s in self.present if ack.first <= s <= ack.last}
        assert deleted <= self.at_controller, "an ack deleted records the controller lacks"
        self.present -= deleted
        self.sender.acked(ack.first, ack.last)
        self.the_sender_runs()

    # -- the link and the controller --------------------------------------------------------------

    @precondition(lambda self: self.to_controller)
    @rule(pick=st.integers(min_value=0), lose=st.booleans())
    def a_batch_arrives_or_is_lost(self, pick: int, lose: bool) -> None:
        batch = self.to_controller.pop(pick % len(self.to_controller))
        if lose:
            return
        self.at_controller |= batch.seqs
        self.controller_dropped_total = max(self.controller_dropped_total, batch.dropped_total)
        self.to_device.append(AckMessage(batch.first, batch.last, EPOCH))

    @precondition(lambda self: self.to_device)
    @rule(pick=st.integers(min_value=0), lose=st.booleans(), twice=st.booleans())
    def an_ack_arrives_or_is_lost(self, pick: int, lose: bool, twice: bool) -> None:
        ack = self.to_device.pop(pick % len(self.to_device))
        if lose:
            return
        self.apply_ack(ack)
        if twice:
            self.apply_ack(ack)

    @rule(first=st.integers(min_value=1, max_value=60), length=st.integers(0, 60),
          epoch=st.integers(min_value=0, max_value=20).filter(lambda e: e != EPOCH))
    def an_ack_for_another_outbox_arrives(self, first: int, length: int, epoch: int) -> None:
        self.apply_ack(AckMessage(first, first + length, epoch))

    @rule(first=st.integers(min_value=1, max_value=60), length=st.integers(0, 60))
    def an_ack_naming_no_epoch_arrives(self, first: int, length: int) -> None:
        self.apply_ack(AckMessage(first, first + length, None))

    @rule(seconds=st.sampled_from([0.5, 3.0, ACK_TIMEOUT_S + 1]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @precondition(lambda self: self.connected)
    @rule(lose_in_flight=st.booleans())
    def the_link_drops(self, lose_in_flight: bool) -> None:
        self.connected = False
        if lose_in_flight:
            self.to_controller.clear()
            self.to_device.clear()

    @precondition(lambda self: not self.connected)
    @rule()
    def the_link_comes_back(self) -> None:
        self.connected = True
        self.sender.reconnected()
        self.the_sender_runs()

    # -- invariants ----------------------------------------------------------------------------------

    @invariant()
    def every_batch_of_records_out_is_within_what_the_sender_says_is_in_flight(self) -> None:
        span = self.sender.in_flight()
        for first, entry in self.sender.inflight.items():
            batch = self.out.get(first)
            if batch is None or batch.last != entry.last_seq:
                continue  # an empty batch reporting drops carries no record
            assert span is not None and span[0] <= first and entry.last_seq <= span[1]

    @invariant()
    def the_sender_never_counts_drops_as_reported_that_no_batch_carried(self) -> None:
        # Not "that the controller received": an ack carries no drop count, so the late ack of
        # a range sent before a reconnect credits the count the same range carried when it
        # was sent again after it (kept as it was; reported with this refactor).
        assert self.sender.dropped_reported <= self.max_dropped_sent
        assert self.sender.dropped_reported <= self.dropped_total

    @invariant()
    def every_record_is_stored_somewhere_or_counted(self) -> None:
        for seq in range(1, self.last_seq + 1):
            assert seq in self.present or seq in self.at_controller or seq in self.dropped

    def teardown(self) -> None:
        """A reliable link from now on: everything arrives, the outbox drains."""
        if not self.connected:
            self.the_link_comes_back()
        for _ in range(200):
            if not self.present and not self.to_controller and not self.to_device \
                    and not self.sender.drops_unreported(self.dropped_total):
                break
            self.the_sender_runs()
            while self.to_controller:
                self.a_batch_arrives_or_is_lost(0, lose=False)
            while self.to_device:
                self.an_ack_arrives_or_is_lost(0, lose=False, twice=False)
            self.now += ACK_TIMEOUT_S + 1  # what was lost before is sent again
        assert not self.present, f"records never delivered: {sorted(self.present)}"
        assert set(range(1, self.last_seq + 1)) <= self.at_controller | self.dropped
        assert not self.sender.drops_unreported(self.dropped_total)


SenderMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=50,
                                           deadline=None)
TestTelemetrySenderSequences = SenderMachine.TestCase


def test_a_late_ack_of_the_shorter_first_send_strands_nothing() -> None:
    """A sequence the generator rarely finds by chance: three records go out, a fourth is
    stored, the link drops and comes back (1..4 goes again), the old batch arrives, the new one
    is lost, and the old batch's ack comes back. Record 4 must still go out."""
    m = SenderMachine()
    m.records_are_stored(3)
    m.the_sender_runs()
    m.records_are_stored(1)
    m.the_link_drops(lose_in_flight=False)
    m.the_link_comes_back()
    m.a_batch_arrives_or_is_lost(0, lose=False)  # 1..3
    m.a_batch_arrives_or_is_lost(0, lose=True)  # 1..4
    m.an_ack_arrives_or_is_lost(0, lose=False, twice=False)  # the ack of 1..3
    assert m.present == {4}
    m.teardown()
