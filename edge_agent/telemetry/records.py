"""Telemetry records as the outbox stores them: compact JSON objects, one string per record.

The prediction path keeps one :class:`CallRecords` per sampled inference call and does no
encoding; :func:`encode_pending` turns them (and the other records, plain dicts) into outbox
bodies at the next flush, off the prediction path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class CallRecords:
    """The prediction records of one inference call, kept compact until the next flush."""

    ts: float
    model: str
    version: int
    first: int  # prediction number of its first row
    latency_ms: float  # per row
    labels: list[Any]
    confidences: list[float] | None
    sampled: range | list[int]  # the rows whose records are kept


_json = json.JSONEncoder(separators=(",", ":")).encode  # what the outbox stores records as
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _float_json(x: float) -> str:
    """A float as ``json`` writes it (repr, or NaN/Infinity, which sending then refuses)."""
    text = float.__repr__(x)
    return _NON_FINITE.get(text, text)


def encode_pending(pending: list[dict[str, Any] | CallRecords], boot_id: str) -> list[str]:
    """The outbox bodies of the pending records, in order.

    Prediction records are written by format instead of through ``json`` (a third of the cost
    of a batch's telemetry): keys in the same order, values as ``json`` encodes them, so the
    body is the very string ``json`` would give (tests/agent_runtime compare them).
    """
    bodies: list[str] = []
    append = bodies.append
    label_json: dict[tuple[type, Any], str] = {}  # class labels repeat: encode each once
    for item in pending:
        if not isinstance(item, CallRecords):
            append(_json(item))
            continue
        head = (f'{{"kind":"prediction","ts":{_float_json(item.ts)},"model":{_json(item.model)},'
                f'"version":{int(item.version)},"prediction_id":"{boot_id}-')
        latency = f',"latency_ms":{_float_json(item.latency_ms)},"label":'
        labels, confidences, first = item.labels, item.confidences, item.first
        for i in item.sampled:
            label = labels[i]
            if isinstance(label, float):
                text = _float_json(label)
            else:
                key = (type(label), label)
                text = label_json.get(key) or label_json.setdefault(key, _json(label))
            if confidences is None:
                append(f"{head}{first + i}\"{latency}{text}}}")
            else:
                append(f'{head}{first + i}"{latency}{text},"confidence":'
                       f"{_float_json(confidences[i])}}}")
    return bodies
