"""The per-device marks a group commit writes: one row per device, the latest receipt and the
highest dropped_total among its batches, in device order."""

from __future__ import annotations

from controller.fleet.ingest_wire import DecodedBatch
from controller.fleet.telemetry_store import device_marks


def batch(device: str, received_at: float, dropped: int) -> DecodedBatch:
    return DecodedBatch(device, 1, 1, 0, dropped, received_at, [])


def test_one_row_per_device_in_device_order() -> None:
    marks = device_marks([batch("b", 5.0, 0), batch("a", 7.0, 2), batch("b", 9.0, 1),
                          batch("a", 6.0, 4)])
    assert marks == [("a", 7.0, 4, 7.0), ("b", 9.0, 1, 9.0)]


def test_no_batches_no_rows() -> None:
    assert device_marks([]) == []
