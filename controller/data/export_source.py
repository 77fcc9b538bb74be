"""What an export reads from the database: the devices it covers and their labels, the true
labels from feedback, whether devices sampled, and the prediction records in key order."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

import msgspec
import sqlalchemy as sa

from controller.data.export_query import ExportQuery
from controller.fleet.prediction_sums import PREDICTION_KINDS
from controller.fleet.queries import load_labels, operator_labels
from controller.fleet.selectors import parse_selector
from controller.storage.db import Database
from controller.storage.tables import devices, telemetry


class _Feedback(msgspec.Struct):
    truth: Any = None  # the rest of a feedback record is skipped unread


_decode_truth = msgspec.json.Decoder(_Feedback).decode


def device_labels(db: Database, selector: str | None) -> dict[str, dict[str, str]]:
    """Effective labels of the devices the selector picks (every device without one)."""
    picks = parse_selector(selector) if selector else None
    with db.read() as conn:
        rows = conn.execute(sa.select(devices.c.device_id, devices.c.labels_json)).all()
        overrides = operator_labels(conn, None)
    out = {}
    for device_id, raw in rows:
        labels = {**load_labels(raw), **overrides.get(device_id, {})}
        if picks is None or picks.matches(labels):
            out[str(device_id)] = labels
    return out


def true_labels(db: Database, model: str) -> dict[str, Any]:
    """prediction id -> true label, from the model's feedback records."""
    t = telemetry.c
    q = sa.select(t.prediction_id, t.payload_json).where(
        t.kind == "feedback", t.model == model, t.prediction_id.is_not(None))
    out: dict[str, Any] = {}
    with db.read() as conn:
        for pid, payload in conn.execute(q):
            try:
                truth = _decode_truth(payload).truth
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            out[str(pid)] = truth
    return out


def sampled_on_devices(db: Database, model: str, version: int | None) -> bool:
    """Whether any of the model's columnar records was sampled on its device."""
    t = telemetry.c
    q = sa.select(t.seq).where(t.kind == "predictions", t.model == model,
                               t.payload_json.like('%"share":%')).limit(1)
    if version is not None:
        q = q.where(t.version == version)
    with db.read() as conn:
        return conn.execute(q).first() is not None


def prediction_records(db: Database, query: ExportQuery,
                       selected: Collection[str]) -> Iterator[Any]:
    """The rows of the model's prediction records the query covers, in (device, epoch, seq)
    order, streamed; ``selected``: the devices the query's selector picked (unused without
    a selector)."""
    t = telemetry.c
    q = sa.select(t.device_id, t.epoch, t.seq, t.kind, t.ts, t.model, t.version,
                  t.prediction_id, t.latency_ms, t.payload_json, t.received_at).where(
        t.kind.in_(PREDICTION_KINDS), t.model == query.model)
    if query.version is not None:
        q = q.where(t.version == query.version)
    if query.since is not None:
        q = q.where(t.ts >= query.since)
    if query.selector:
        q = q.where(t.device_id.in_(sorted(selected)))
    q = q.order_by(t.device_id, t.epoch, t.seq)
    with db.read() as conn:
        result = conn.execution_options(stream_results=True, yield_per=2000).execute(q)
        yield from result
