"""Telemetry records as the outbox stores them: compact JSON objects, one string per record.

The prediction path keeps one :class:`CallRecords` per sampled inference call and does no
encoding; :func:`encode_pending` turns them (and the other records, plain dicts) into outbox
bodies at the next flush, off the prediction path.

Two forms of prediction records:

- one ``prediction`` record per prediction (``telemetry_columnar = false``, what every
  controller reads);
- ``columnar`` (the agent's default): one ``predictions`` record per flush and model version, its predictions as
  arrays (one outbox row, one seq and one controller row for many predictions), with the
  input rows the model saw, so the collected data can be exported as a training set::

    {"kind": "predictions", "ts": <last call>, "model": "iris", "version": 3, "n": 3,
     "boot": "<boot id>", "pid": [17, 18, 19],
     "calls": [[2, <ts>, <latency_ms per row>], [1, <ts>, <latency_ms>]],
     "latency_ms": <mean per row>, "labels": [1, 0, 2],
     "confidence_f32": "<base64 float32 x n>",
     "n_features": 4, "inputs_f32": "<base64 float32, n rows x n_features, row-major>"}

  ``share`` (left out when 1): the share of the predictions whose records were kept when these
  ran (the device's group sampling, or its ``prediction_sample_rate``); a run of calls under
  another share is another record.
  A prediction's id is ``<boot>-<pid>``, as in the per-prediction form; ``calls`` gives each
  call's row count, time and latency per row, in order (their counts add up to ``n``).
  ``confidence_f32`` is left out for a model without scores; a model with an input schema has
  ``inputs`` (the rows as JSON, in field order) instead of ``inputs_f32``; neither when the
  inputs cannot be written.
  Controllers read this kind from the release that added it on (an older one's devices record
  per prediction).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import numpy as np


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
    share: float = 1.0  # the share of predictions whose records were kept when it ran


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
            if run and (run[0].model, run[0].version, run[0].share) != \
                    (item.model, item.version, item.share):
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
    """One ``predictions`` record for the calls (same model version), in call order. Numbers
    repeated per call (time, latency) go once per call; float arrays (confidences, numeric
    inputs) as base64 of little-endian float32, which costs a fraction of writing each float
    in JSON (and is what the model saw: its inputs are float32)."""
    pid: list[int] = []
    segments: list[list[float]] = []  # [rows, ts, latency_ms] per call
    labels: list[Any] = []
    conf: list[Any] | None = [] if all(c.confidences is not None for c in calls) else None
    arrays: list[Any] | None = []  # numeric input rows (float32 arrays)
    json_rows: list[Any] | None = []  # other input rows (records of named fields)
    for c in calls:
        s = c.sampled
        k = len(s)
        whole = isinstance(s, range) and k == len(c.labels)
        if whole:  # every row: slices, no Python loop
            pid.extend(range(c.first, c.first + k))
            labels.extend(c.labels)
            if conf is not None:
                conf.extend(c.confidences or ())
        else:
            pid.extend(c.first + i for i in s)
            labels.extend(c.labels[i] for i in s)
            if conf is not None and c.confidences is not None:
                conf.extend(c.confidences[i] for i in s)
        segments.append([k, c.ts, c.latency_ms])
        x = c.inputs
        if isinstance(x, np.ndarray) and x.ndim == 2 and arrays is not None:
            arrays.append(x if whole else x[list(s)])
            json_rows = None
        elif x is not None and json_rows is not None and hasattr(x, "rows"):
            rows = x.rows()
            json_rows.extend(rows if whole else [rows[i] for i in s])
            arrays = None
        else:
            arrays = json_rows = None
    last = calls[-1]
    n = len(pid)
    total_ms = sum(seg[0] * seg[2] for seg in segments)
    record: dict[str, Any] = {
        "kind": "predictions", "ts": last.ts, "model": last.model, "version": last.version,
        "n": n, "boot": boot_id, "pid": pid, "calls": segments,
        "latency_ms": total_ms / n if n else 0.0, "labels": labels}
    if last.share < 1.0:  # a sample: each record kept stands for 1/share predictions
        record["share"] = last.share
    if conf is not None:
        record["confidence_f32"] = _f32(np.asarray(conf, dtype="<f4"))
    if arrays:
        x = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        record["n_features"] = int(x.shape[1])
        record["inputs_f32"] = _f32(np.ascontiguousarray(x, dtype="<f4"))
    elif json_rows:
        record["inputs"] = json_rows
    return _json(record)


def _f32(a: Any) -> str:
    return base64.b64encode(a.tobytes()).decode("ascii")
