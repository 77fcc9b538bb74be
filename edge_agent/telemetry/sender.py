"""Which telemetry batches to send and which acknowledgements to apply. Pure: no I/O, no clock
(times are passed in), no asyncio.

Records wait in the agent's outbox (:mod:`edge_agent.outbox`) until the controller acknowledges
them; the sender keeps the window of batches in flight:

- at most ``max_inflight`` batches of at most ``batch_size`` records are out at once, each read
  after the last seq already sent;
- a batch unacknowledged for ``ack_timeout_s``, or a reconnect, sends everything not yet
  acknowledged again, from the oldest (the controller stores each (device, epoch, seq) once,
  so a batch that arrives twice costs nothing);
- an acknowledgement deletes exactly the range the controller acknowledged, and only when it
  is for this outbox's epoch: an ack for an outbox the agent replaced names other records;
- drops that no later batch would carry (the outbox is empty) go in an empty batch at the last
  seq, acknowledged like any other; its ack deletes nothing, seqs are never reused.

The shell (:class:`~edge_agent.telemetry.uplink.TelemetryUplink`) asks :meth:`~TelemetrySender.poll`
what to do, reads and publishes what :meth:`~TelemetrySender.next_read` says, and tells the
sender what went out (:meth:`~TelemetrySender.sent`) and what the outbox deleted
(:meth:`~TelemetrySender.acked`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_agent.outbox import OutboxStats


@dataclass(frozen=True)
class InFlight:
    """A batch sent and not acknowledged yet (keyed by its first seq)."""

    last_seq: int
    sent_at: float  # on the clock ``now`` is read from
    dropped_total: int  # the count the batch told the controller


# -- what poll() says ------------------------------------------------------------------------


@dataclass(frozen=True)
class Idle:
    """Nothing to send now."""


@dataclass(frozen=True)
class ReportDrops:
    """Publish an empty batch at ``seq`` carrying ``dropped_total``; then :meth:`drops_sent`."""

    seq: int
    dropped_total: int


@dataclass(frozen=True)
class SendBatches:
    """Records wait that were not sent: read and publish while :meth:`next_read` says so."""


Poll = Idle | ReportDrops | SendBatches


@dataclass(frozen=True)
class Read:
    """Read up to ``limit`` records with a seq above ``after_seq`` and publish them as a batch."""

    after_seq: int
    limit: int


# -- what on_ack() says --------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyAck:
    """Delete ``first_seq..last_seq`` from the outbox; then :meth:`acked`."""

    first_seq: int
    last_seq: int


@dataclass(frozen=True)
class RefuseAck:
    """An ack for another outbox (its epoch): delete nothing."""

    detail: str


AckDecision = ApplyAck | RefuseAck


class TelemetrySender:
    def __init__(self, *, batch_size: int, max_inflight: int, ack_timeout_s: float) -> None:
        if batch_size < 1 or max_inflight < 1:
            raise ValueError("batch_size and max_inflight must be >= 1")
        self.batch_size = batch_size
        self.max_inflight = max_inflight
        self.ack_timeout_s = ack_timeout_s
        self._inflight: dict[int, InFlight] = {}
        self.sent_upto = 0  # the last seq sent (0: send from the oldest)
        self.dropped_reported = 0  # the highest dropped_total the controller acknowledged

    @property
    def inflight(self) -> dict[int, InFlight]:
        """The batches out, by first seq (a copy)."""
        return dict(self._inflight)

    def reconnected(self) -> None:
        """The link came (back) up: batches not acknowledged may have been lost with the
        connection, so everything not acknowledged goes again, from the oldest."""
        self._resend_all()

    def in_flight(self) -> tuple[int, int] | None:
        """The seqs sent and awaiting their ack (first, last), for the outbox's overflow: a
        record dropped after it was sent could reach the controller and be stored *and* counted
        as dropped."""
        return (min(self._inflight), self.sent_upto) if self._inflight else None

    def drops_unreported(self, dropped_total: int) -> bool:
        return dropped_total > self.dropped_reported

    def poll(self, now: float, stats: OutboxStats) -> Poll:
        if any(now - b.sent_at > self.ack_timeout_s for b in self._inflight.values()):
            self._resend_all()  # unacknowledged for too long: send from the oldest again
        if stats.pending == 0 and not self._inflight and self.drops_unreported(stats.dropped_total):
            if stats.last_seq < 1:
                # nothing was ever stored (a full disk from the start): the next batch says it
                return Idle()
            return ReportDrops(stats.last_seq, stats.dropped_total)
        if stats.pending == 0 or stats.last_seq <= self.sent_upto:
            return Idle()  # nothing unsent: skip the read (a thousand agents poll every 0.2 s)
        return SendBatches()

    def next_read(self) -> Read | None:
        """The next batch to read and publish, or None while the window is full."""
        if len(self._inflight) >= self.max_inflight:
            return None
        return Read(self.sent_upto, self.batch_size)

    def sent(self, first_seq: int, last_seq: int, now: float, dropped_total: int) -> None:
        """A batch ``first_seq..last_seq`` was published."""
        self._inflight[first_seq] = InFlight(last_seq, now, dropped_total)
        self.sent_upto = last_seq

    def drops_sent(self, seq: int, now: float, dropped_total: int) -> None:
        """The empty batch of :class:`ReportDrops` was published."""
        self._inflight[seq] = InFlight(seq, now, dropped_total)

    def on_ack(self, first_seq: int, last_seq: int, epoch: int | None,
               outbox_epoch: int) -> AckDecision:
        """What to do with the controller's ack of ``first_seq..last_seq`` of ``epoch``: only
        an ack naming this outbox's epoch deletes anything (``None``, no epoch, is refused: it
        could name any outbox)."""
        if epoch is None:
            return RefuseAck(f"ack {first_seq}..{last_seq} names no epoch")
        if epoch != outbox_epoch:
            return RefuseAck(f"ack {first_seq}..{last_seq} of epoch {epoch}, outbox epoch is "
                             f"{outbox_epoch}")
        return ApplyAck(first_seq, last_seq)

    def acked(self, first_seq: int, last_seq: int) -> None:
        """The outbox deleted what :class:`ApplyAck` named."""
        entry = self._inflight.get(first_seq)
        # an ack for a shorter batch with the same first seq (sent before a reconnect, delivered
        # late) must not untrack the longer one in flight now: its records would then never be
        # sent again while the link stays up (seen in the simulator after a broker restart)
        if entry is not None and entry.last_seq <= last_seq:
            del self._inflight[first_seq]
            self.dropped_reported = max(self.dropped_reported, entry.dropped_total)

    def _resend_all(self) -> None:
        self._inflight.clear()
        self.sent_upto = 0
