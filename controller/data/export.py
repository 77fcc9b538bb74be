"""The predictions the fleet made, as a training set: one row per prediction, Parquet or CSV.

Columns: ``device_id``, ``device.<key>`` for every label of the devices exported (operator
labels over the device's own), ``model``, ``version``, ``epoch`` and ``seq`` (the record's key
at the controller), ``prediction_id``, ``ts`` (when the device predicted, Unix seconds),
``received_at``, ``latency_ms``, ``prediction``, ``probability`` (the predicted class's, when
the model gives scores), ``label`` (the true label from feedback, when it came back), then one
column per input feature, named as in the manifest (``feature_names``, or the input schema's
fields). Inputs are known for predictions recorded columnar (agents with
``telemetry_columnar``); for the others those columns are empty.

Both forms of prediction records are read: a ``prediction`` row is one prediction; a
``predictions`` row holds many as arrays (edge_agent/telemetry/records.py) and becomes as many
rows. Rows come in (device, epoch, seq) order and are written in record batches, so memory stays
bounded by one batch (plus the labels, one entry per feedback record).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import numpy as np
import sqlalchemy as sa

from controller.errors import ValidationError
from controller.fleet.prediction_sums import PREDICTION_KINDS
from controller.fleet.queries import load_labels, operator_labels
from controller.fleet.selectors import parse_selector
from controller.storage.db import Database
from controller.storage.tables import devices, telemetry
from edgewise_wire import Manifest

FORMATS = ("parquet", "csv")
BATCH_ROWS = 65_536  # predictions per record batch written
_decode = msgspec.json.Decoder().decode


@dataclass(frozen=True)
class ExportQuery:
    model: str
    version: int | None = None  # None: every version
    since: float | None = None  # Unix seconds; None: from the first record
    selector: str | None = None
    labelled_only: bool = False


@dataclass(frozen=True)
class ExportSummary:
    rows: int
    devices: int
    labelled: int
    columns: list[str]


class EmptyExport(ValidationError):
    """Nothing matched: no prediction of the model in the range, devices and labels asked."""


def describe(q: ExportQuery) -> str:
    what = f"{q.model}:{q.version}" if q.version is not None else q.model
    parts = [f"no predictions of {what}"]
    if q.since is not None:
        parts.append(f"since ts {q.since:.0f}")
    if q.selector:
        parts.append(f"on devices matching {q.selector!r}")
    if q.labelled_only:
        parts.append("with a label")
    return " ".join(parts)


class Exporter:
    """Reads one export's rows out of the database as Arrow record batches."""

    def __init__(self, db: Database, manifest: Manifest, query: ExportQuery) -> None:
        import pyarrow as pa  # the controller's [controller] extra; only exports need it

        self.pa = pa
        self.db = db
        self.query = query
        self.manifest = manifest
        schema = manifest.input_schema
        if schema is not None:
            self.features = list(schema.names)
            self.feature_types = [pa.float64() if f.kind == "number" else pa.string()
                                  for f in schema.fields]
        else:
            self.features = list(manifest.feature_names)
            self.feature_types = [pa.float64()] * len(self.features)
        classes = manifest.class_labels
        if classes is None:
            self.label_type = pa.float64()
        elif all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
            self.label_type = pa.int64()
        else:
            self.label_type = pa.string()
        self._device_labels = self._devices()
        self.label_keys = sorted({k for labels in self._device_labels.values() for k in labels})
        fields = [("device_id", pa.string())]
        fields += [(f"device.{k}", pa.string()) for k in self.label_keys]
        fields += [("model", pa.string()), ("version", pa.int64()), ("epoch", pa.int64()),
                   ("seq", pa.int64()), ("prediction_id", pa.string()), ("ts", pa.float64()),
                   ("received_at", pa.float64()), ("latency_ms", pa.float64()),
                   ("prediction", self.label_type), ("probability", pa.float64()),
                   ("label", self.label_type)]
        taken = {name for name, _ in fields}
        fields += [(f if f not in taken else f"input.{f}", t)
                   for f, t in zip(self.features, self.feature_types, strict=True)]
        self.schema = pa.schema(fields)
        self.truth = self._labels()

    # -- what is exported -------------------------------------------------------------------

    def _devices(self) -> dict[str, dict[str, str]]:
        """Effective labels of the devices the selector picks (every device without one)."""
        selector = parse_selector(self.query.selector) if self.query.selector else None
        with self.db.read() as conn:
            rows = conn.execute(sa.select(devices.c.device_id, devices.c.labels_json)).all()
            overrides = operator_labels(conn, None)
        out = {}
        for device_id, raw in rows:
            labels = {**load_labels(raw), **overrides.get(device_id, {})}
            if selector is None or selector.matches(labels):
                out[str(device_id)] = labels
        return out

    def _labels(self) -> dict[str, Any]:
        """prediction id -> true label, from the model's feedback records."""
        t = telemetry.c
        q = sa.select(t.prediction_id, t.payload_json).where(
            t.kind == "feedback", t.model == self.query.model, t.prediction_id.is_not(None))
        out: dict[str, Any] = {}
        with self.db.read() as conn:
            for pid, payload in conn.execute(q):
                try:
                    truth = _decode(payload).get("truth")
                except (msgspec.DecodeError, AttributeError):
                    continue
                out[str(pid)] = truth
        return out

    def _records(self) -> Iterator[Any]:
        t = telemetry.c
        q = sa.select(t.device_id, t.epoch, t.seq, t.kind, t.ts, t.model, t.version,
                      t.prediction_id, t.latency_ms, t.payload_json, t.received_at).where(
            t.kind.in_(PREDICTION_KINDS), t.model == self.query.model)
        if self.query.version is not None:
            q = q.where(t.version == self.query.version)
        if self.query.since is not None:
            q = q.where(t.ts >= self.query.since)
        if self.query.selector:
            q = q.where(t.device_id.in_(sorted(self._device_labels)))
        q = q.order_by(t.device_id, t.epoch, t.seq)
        with self.db.read() as conn:
            result = conn.execution_options(stream_results=True, yield_per=2000).execute(q)
            yield from result

    # -- rows -> record batches ---------------------------------------------------------------

    def batches(self) -> Iterator[Any]:
        """Arrow record batches of at most :data:`BATCH_ROWS` predictions, in key order."""
        cols = _Columns(len(self.features))
        truth = self.truth
        labelled_only = self.query.labelled_only
        for r in self._records():
            try:
                body = _decode(r.payload_json)
            except msgspec.DecodeError:
                continue
            if not isinstance(body, dict):
                continue
            if r.kind == "prediction":
                pid = r.prediction_id
                label = truth.get(pid) if pid is not None else None
                if labelled_only and label is None:
                    continue
                cols.add_one(r, pid, body, label, body.get("inputs"))
            else:
                cols.add_many(r, body, truth, labelled_only)
            if cols.n >= BATCH_ROWS:
                yield self._batch(cols)
                cols = _Columns(len(self.features))
        if cols.n:
            yield self._batch(cols)

    def _batch(self, c: _Columns) -> Any:
        pa = self.pa
        n = c.n
        labels = self._device_labels
        arrays = [pa.array(c.device_id, pa.string())]
        for key in self.label_keys:
            arrays.append(pa.array([labels.get(d, {}).get(key) for d in c.device_id],
                                   pa.string()))
        arrays += [pa.array(c.model, pa.string()), pa.array(c.version, pa.int64()),
                   pa.array(c.epoch, pa.int64()), pa.array(c.seq, pa.int64()),
                   pa.array(c.pid, pa.string()), _float_array(pa, c.ts),
                   _float_array(pa, c.received), _float_array(pa, c.latency),
                   self._labels_array(c.prediction),
                   _float_array(pa, c.probability),
                   self._labels_array(c.label)]
        for i, t in enumerate(self.feature_types):
            column = c.inputs[i]
            if t == pa.float64():
                arrays.append(_float_array(pa, column))
            else:
                arrays.append(pa.array([None if v is None else str(v) for v in column],
                                       pa.string()))
        assert all(len(a) == n for a in arrays)
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


    def _labels_array(self, values: list[Any]) -> Any:
        """Labels in the column's type, converted by Arrow when they all fit; a value of
        another type is left empty."""
        pa = self.pa
        if self.label_type == pa.float64():
            return _float_array(pa, values)
        try:
            return pa.array(values, self.label_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            return pa.array(_converter(self.label_type, pa)(values), self.label_type)


def _float_array(pa: Any, values: list[Any]) -> Any:
    """A float64 column: Arrow converts Python floats (NaN as null) in C; values of other
    types (a record with a string where a number was expected) go the careful way."""
    try:
        array = pa.array(values, pa.float64(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return pa.array(_floats(values), pa.float64())
    return array


class _Columns:
    """The columns of one record batch, filled row by row or array by array."""

    def __init__(self, features: int) -> None:
        self.n = 0
        self.features = features
        self.device_id: list[str] = []
        self.model: list[str] = []
        self.version: list[int | None] = []
        self.epoch: list[int] = []
        self.seq: list[int] = []
        self.pid: list[str | None] = []
        self.ts: list[float] = []
        self.received: list[float] = []
        self.latency: list[float | None] = []
        self.prediction: list[Any] = []
        self.probability: list[Any] = []
        self.label: list[Any] = []
        self.inputs: list[list[Any]] = [[] for _ in range(features)]

    def add_one(self, r: Any, pid: str | None, body: dict[str, Any], label: Any,
                inputs: Any) -> None:
        self._keys(r, 1)
        self.pid.append(pid)
        self.ts.append(float(r.ts))
        self.latency.append(r.latency_ms)
        self.prediction.append(body.get("label"))
        self.probability.append(body.get("confidence"))
        self.label.append(label)
        row = inputs if isinstance(inputs, list) and len(inputs) == self.features else None
        for i in range(self.features):
            self.inputs[i].append(row[i] if row is not None else None)

    def add_many(self, r: Any, body: dict[str, Any], truth: dict[str, Any],
                 labelled_only: bool) -> None:
        pids: Any = body.get("pid")
        labels = body.get("labels")
        n = len(pids) if isinstance(pids, list) else 0
        if n == 0 or not isinstance(labels, list) or len(labels) != n:
            return  # not a columnar record this exporter can read
        boot = str(body.get("boot", ""))
        names = [f"{boot}-{p}" for p in pids]
        known = [truth.get(i) for i in names]
        ids: list[str | None] = list(names)
        t, lat = _per_row(body.get("calls"), n, float(r.ts), r.latency_ms)
        scores = _f32(body.get("confidence_f32"), n, 1)
        conf: list[Any] = scores[:, 0].tolist() if scores is not None else [None] * n
        x = _f32(body.get("inputs_f32"), n, self.features)
        cols: list[Sequence[Any]]
        rows: Any = body.get("inputs")
        if x is not None:
            cols = [x[:, i].tolist() for i in range(self.features)]
        elif isinstance(rows, list) and len(rows) == n and all(
                isinstance(row, list) and len(row) == self.features for row in rows):
            cols = list(zip(*rows, strict=True)) if self.features else []
        else:
            cols = [[None] * n for _ in range(self.features)]
        keep: Sequence[int] | range = range(n)
        if labelled_only:
            keep = [i for i in range(n) if known[i] is not None]
            if not keep:
                return
            ids, known, t, lat, conf, labels = (
                [col[i] for i in keep] for col in (ids, known, t, lat, conf, labels))
            cols = [[c[i] for i in keep] for c in cols]
        k = len(keep)
        self._keys(r, k)
        self.pid.extend(ids)
        self.ts.extend(t)
        self.latency.extend(lat)
        self.prediction.extend(labels)
        self.probability.extend(conf)
        self.label.extend(known)
        for i in range(self.features):
            self.inputs[i].extend(cols[i])

    def _keys(self, r: Any, k: int) -> None:
        self.n += k
        self.device_id.extend([r.device_id] * k)
        self.model.extend([r.model] * k)
        self.version.extend([r.version] * k)
        self.epoch.extend([int(r.epoch)] * k)
        self.seq.extend([int(r.seq)] * k)
        self.received.extend([float(r.received_at)] * k)


def _per_row(calls: Any, n: int, ts: float, latency: float | None
             ) -> tuple[list[Any], list[Any]]:
    """Each prediction's time and latency from the record's ``calls`` ([rows, ts, latency]
    per call); the row's own when they do not add up to ``n``."""
    t: list[Any] = []
    lat: list[Any] = []
    if isinstance(calls, list):
        for seg in calls:
            if not (isinstance(seg, list) and len(seg) == 3 and isinstance(seg[0], int)):
                break
            t.extend([seg[1]] * seg[0])
            lat.extend([seg[2]] * seg[0])
    if len(t) != n:
        return [ts] * n, [latency] * n
    return t, lat


def _f32(text: Any, n: int, width: int) -> Any:
    """A base64 float32 array of n x width, or None when absent or of another size."""
    if not isinstance(text, str) or width < 1:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        return None
    if len(raw) != 4 * n * width:
        return None
    return np.frombuffer(raw, dtype="<f4").reshape(n, width).astype(np.float64)


def _floats(values: list[Any]) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            out.append(None)
        else:
            f = float(v)
            out.append(f if math.isfinite(f) else None)
    return out


def _converter(label_type: Any, pa: Any) -> Callable[[list[Any]], list[Any]]:
    """Labels as the column's type; a value of another type is left empty."""
    if label_type == pa.int64():
        return lambda vs: [v if isinstance(v, int) and not isinstance(v, bool) else None
                           for v in vs]
    if label_type == pa.float64():
        return _floats
    return lambda vs: [None if v is None else (v if isinstance(v, str) else json.dumps(v))
                       for v in vs]


# -- writing ---------------------------------------------------------------------------------

def write(exporter: Exporter, fmt: str, sink: BinaryIO | Path) -> ExportSummary:
    """Write every batch to ``sink`` (a path or a binary file object) as ``fmt``; raises
    :class:`EmptyExport` (after writing nothing) when no row matched."""
    if fmt not in FORMATS:
        raise ValidationError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    batches = exporter.batches()
    first = next(batches, None)
    if first is None:
        raise EmptyExport(describe(exporter.query))
    rows = labelled = 0
    devices_seen: set[str] = set()
    writer = _writer(exporter, fmt, sink)
    try:
        for batch in _chain(first, batches):
            writer.write_batch(batch)
            rows += batch.num_rows
            labelled += batch.num_rows - batch.column("label").null_count
            devices_seen.update(batch.column("device_id").unique().to_pylist())
    finally:
        writer.close()
    return ExportSummary(rows, len(devices_seen), labelled, exporter.schema.names)


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _writer(exporter: Exporter, fmt: str, sink: BinaryIO | Path) -> Any:
    target: Any = str(sink) if isinstance(sink, Path) else sink
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(target, exporter.schema, compression="zstd")
    import pyarrow.csv as pcsv

    return pcsv.CSVWriter(target, exporter.schema)


def stream(exporter: Exporter, fmt: str) -> Iterator[bytes]:
    """The export as chunks of bytes, for an HTTP response: each record batch is encoded and
    handed on as it is read (the writer's output is collected per batch)."""
    import pyarrow as pa

    chunks: list[bytes] = []

    class _Sink:
        closed = False

        def write(self, data: Any) -> int:
            chunks.append(bytes(data))
            return len(data)

        def flush(self) -> None:
            pass

        def close(self) -> None:
            self.closed = True

    sink = pa.PythonFile(_Sink(), mode="w")
    batches = exporter.batches()
    first = next(batches, None)
    if first is None:
        raise EmptyExport(describe(exporter.query))
    writer = _writer(exporter, fmt, sink)
    for batch in _chain(first, batches):
        writer.write_batch(batch)
        if chunks:
            yield b"".join(chunks)
            chunks.clear()
    writer.close()
    if chunks:
        yield b"".join(chunks)
