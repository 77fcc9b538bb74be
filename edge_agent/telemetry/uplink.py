"""The I/O around :class:`~edge_agent.telemetry.sender.TelemetrySender`: reads the outbox,
encodes and publishes the batches the sender asks for, and applies the acknowledgements it
accepts. The outbox is passed to every call: the agent may replace its outbox (a corrupt file,
the simulator's full disk) and the sender's window goes on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from edge_agent.outbox import OutboxCorruptError, OverflowPolicy, TelemetryOutbox, move_aside
from edge_agent.telemetry.sender import ApplyAck, ReportDrops, SendBatches, TelemetrySender
from edgewise_wire import Ack, TelemetryBatch, encode
from edgewise_wire.codec import encode_telemetry_spliced
from edgewise_wire.errors import PayloadTooLarge

log = logging.getLogger("edgewise.agent")


def open_outbox(path: Path, *, max_records: int, overflow: OverflowPolicy, tag: str,
                device_id: str) -> TelemetryOutbox:
    """Open the agent's outbox. A corrupt one must not keep the device from serving: it is
    kept (with its WAL) for inspection as ``<name>.corrupt-<tag>`` and an empty one is started.
    Other errors (locked, permissions) are not corruption and are raised."""
    try:
        return TelemetryOutbox(path, max_records=max_records, overflow=overflow)
    except OutboxCorruptError as exc:
        aside = move_aside(path, tag)
        log.error("%s: outbox corrupt (%s); moved to %s", device_id, exc, aside)
        return TelemetryOutbox(path, max_records=max_records, overflow=overflow)


class TelemetryLink(Protocol):
    @property
    def connected(self) -> bool: ...

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        ...


class TelemetryUplink:
    """``drop(reason, detail)`` counts and logs a message the agent could not use or send.
    ``clock``: the device's wall clock, for the batches' ``ts``. The ack timeout is measured on
    the monotonic clock: a wall clock set meanwhile must not make every batch look late."""

    def __init__(self, sender: TelemetrySender, link: TelemetryLink, topic: str, *,
                 drop: Callable[[str, str], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.sender = sender
        self.link = link
        self.topic = topic
        self.drop = drop
        self.clock = clock

    def send(self, outbox: TelemetryOutbox) -> None:
        """Publish what the sender's window has room for."""
        if not self.link.connected:
            return
        now = time.monotonic()
        sender = self.sender
        action = sender.poll(now, outbox.stats())
        if isinstance(action, ReportDrops):
            batch = TelemetryBatch(action.seq, action.seq, [], action.dropped_total,
                                   ts=self.clock(), epoch=outbox.epoch)
            if self.link.publish(self.topic, encode(batch)) == 0:
                sender.drops_sent(action.seq, now, action.dropped_total)
            return
        if not isinstance(action, SendBatches):
            return
        while (read := sender.next_read()) is not None:
            raw = outbox.next_raw(read.limit, after_seq=read.after_seq)
            if not raw:
                return
            first, last = raw[0][0], raw[-1][0]
            # the stored JSON goes out as it is, with the seqs spliced in; only a batch that
            # cannot (too large, a NaN) is decoded record by record
            payload = encode_telemetry_spliced(first, last, raw, outbox.stats().dropped_total,
                                               outbox.epoch, ts=self.clock())
            if payload is None:
                records = [{**json.loads(body), "seq": seq} for seq, body in raw]
                payload, records = self._encode_batch(outbox, records)
                if payload is None:
                    continue  # an undeliverable record was discarded (and counted): read on
                first, last = records[0]["seq"], records[-1]["seq"]
            if self.link.publish(self.topic, payload) != 0:
                return
            sender.sent(first, last, now, outbox.stats().dropped_total)

    def on_ack(self, outbox: TelemetryOutbox, ack: Ack) -> None:
        decision = self.sender.on_ack(ack.first_seq, ack.last_seq, ack.epoch, outbox.epoch)
        if not isinstance(decision, ApplyAck):
            # for an outbox this agent replaced: its seqs are not this outbox's
            self.drop("ack_other_epoch" if ack.epoch is not None else "ack_refused",
                      decision.detail)
            return
        outbox.ack(decision.first_seq, decision.last_seq)
        self.sender.acked(decision.first_seq, decision.last_seq)
        self.send(outbox)

    def _encode_batch(self, outbox: TelemetryOutbox, records: list[dict[str, Any]]
                      ) -> tuple[bytes | None, list[dict[str, Any]]]:
        """Encode a batch, halving it while it is too large for one message. A single record
        that cannot be sent at all (too large, or not valid JSON such as a NaN) is discarded
        from the outbox as a counted drop instead of blocking every later record."""
        while True:
            batch = TelemetryBatch(records[0]["seq"], records[-1]["seq"], records,
                                   outbox.stats().dropped_total, ts=self.clock(),
                                   epoch=outbox.epoch)
            try:
                return encode(batch), records
            except (PayloadTooLarge, ValueError) as exc:
                if len(records) > 1:
                    records = records[:len(records) // 2]
                    continue
                seq = records[0]["seq"]
                outbox.discard(seq, seq)
                self.drop("undeliverable_record",
                          f"telemetry record seq {seq} cannot be sent ({exc}); discarded, "
                          "counted in dropped_total")
                return None, records
