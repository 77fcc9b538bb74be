"""Telemetry records as the outbox stores them: compact JSON objects, one string per record.

The prediction path keeps one :class:`CallRecords` per sampled inference call and does no
encoding; :func:`encode_pending` turns them (and the other records, plain dicts) into outbox
bodies at the next flush, off the prediction path.

Two forms of prediction records:

- one ``prediction`` record per prediction (the default, what every controller reads);
- ``columnar``: one ``predictions`` record per flush and model version, its predictions as
  arrays (one outbox row, one seq and one controller row for many predictions), with the
  input rows the model saw, so the collected data can be exported as a training set::

    {"kind": "predictions", "ts": <last call>, "model": "iris", "version": 3, "n": 2,
     "boot": "<boot id>", "pid": [17, 18], "t": [<call time per row>, ...],
     "latency_ms": <mean per row>, "lat": [<per row>, ...], "labels": [1, 0],
     "confidence": [0.9, 0.7], "inputs": [[5.1, 3.5, 1.4, 0.2], ...]}

  A prediction's id is ``<boot>-<pid>``, as in the per-prediction form. ``confidence`` is
  left out for a model without scores, ``inputs`` where the rows cannot be written as JSON.
  Controllers read this kind from the release that added it on (upgrade them first).
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
    inputs: Any = None  # the rows the model saw (a float32 array or a RecordBatch); columnar


_json = json.JSONEncoder(separators=(",", ":")).encode  # what the outbox stores records as
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _float_json(x: float) -> str:
    """A float as ``json`` writes it (repr, or NaN/Infinity, which sending then refuses)."""
    text = float.__repr__(x)
    return _NON_FINITE.get(text, text)


def encode_pending(pending: list[dict[str, Any] | CallRecords], boot_id: str,
                   columnar: bool = False) -> list[str]:
    """The outbox bodies of the pending records, in order (``columnar``: the prediction
    records of consecutive calls of one model version as one ``predictions`` record).

    Prediction records are written by format instead of through ``json`` (a third of the cost
    of a batch's telemetry): keys in the same order, values as ``json`` encodes them, so the
    body is the very string ``json`` would give (tests/agent_runtime compare them).
    """
    if columnar:
        return _encode_columnar(pending, boot_id)
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


def _encode_columnar(pending: list[dict[str, Any] | CallRecords], boot_id: str) -> list[str]:
    bodies: list[str] = []
    run: list[CallRecords] = []
    for item in pending:
        if isinstance(item, CallRecords):
            if run and (run[0].model, run[0].version) != (item.model, item.version):
                bodies.append(_columnar(run, boot_id))
                run = []
            run.append(item)
            continue
        if run:
            bodies.append(_columnar(run, boot_id))
            run = []
        bodies.append(_json(item))
    if run:
        bodies.append(_columnar(run, boot_id))
    return bodies


def _columnar(calls: list[CallRecords], boot_id: str) -> str:
    """One ``predictions`` record for the calls (same model version), in call order."""
    pid: list[int] = []
    t: list[float] = []
    lat: list[float] = []
    labels: list[Any] = []
    conf: list[float] | None = [] if all(c.confidences is not None for c in calls) else None
    inputs: list[Any] | None = []
    for c in calls:
        s = c.sampled
        k = len(s)
        if isinstance(s, range) and k == len(c.labels):  # every row: slices, no Python loop
            pid.extend(range(c.first, c.first + k))
            labels.extend(c.labels)
            if conf is not None:
                conf.extend(c.confidences or ())
            rows = _rows(c.inputs)
        else:
            pid.extend(c.first + i for i in s)
            labels.extend(c.labels[i] for i in s)
            if conf is not None and c.confidences is not None:
                conf.extend(c.confidences[i] for i in s)
            rows = _rows(c.inputs)
            rows = [rows[i] for i in s] if rows is not None else None
        t.extend([c.ts] * k)
        lat.extend([c.latency_ms] * k)
        if inputs is not None and rows is not None:
            inputs.extend(rows)
        else:
            inputs = None
    last = calls[-1]
    record: dict[str, Any] = {
        "kind": "predictions", "ts": last.ts, "model": last.model, "version": last.version,
        "n": len(pid), "boot": boot_id, "pid": pid, "t": t,
        "latency_ms": sum(lat) / len(lat) if lat else 0.0, "lat": lat, "labels": labels}
    if conf is not None:
        record["confidence"] = conf
    if inputs is not None:
        record["inputs"] = inputs
    return _json(record)


def _rows(inputs: Any) -> list[Any] | None:
    """The input rows as JSON values: a numeric array's rows, a RecordBatch's rows in field
    order; None if there are none."""
    if inputs is None:
        return None
    tolist = getattr(inputs, "tolist", None)
    if tolist is not None:
        rows: list[Any] = tolist()
        return rows
    as_rows = getattr(inputs, "rows", None)
    return as_rows() if callable(as_rows) else None
