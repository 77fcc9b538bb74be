"""The stored prediction records of an export as Arrow record batches, in key order.

Both forms of prediction records are read: a ``prediction`` row is one prediction; a
``predictions`` row holds many as arrays (edge_agent/telemetry/records.py) and becomes as many
rows. Records come in (device, epoch, seq) order and leave in record batches of about
:data:`BATCH_ROWS` rows, so memory stays bounded by one batch (plus the labels, one entry per
feedback record).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec
import numpy as np

from controller.data.export_fields import (
    by_boot,
    device_share,
    f32,
    floats,
    int_array,
    known_labels,
    per_row_arrays,
)
from controller.data.export_query import ExportQuery
from controller.data.export_rows import RowColumns
from controller.data.export_schema import ExportColumns

BATCH_ROWS = 65_536  # predictions per record batch written
_decode = msgspec.json.Decoder().decode


class BatchBuilder:
    """Turns one export's prediction records into record batches of its columns."""

    def __init__(self, columns: ExportColumns, device_labels: dict[str, dict[str, str]],
                 truth: dict[str, Any], query: ExportQuery) -> None:
        """``device_labels``: the exported devices' labels; ``truth``: prediction id -> true
        label."""
        import pyarrow as pa  # the controller's [controller] extra; only exports need it
        import pyarrow.compute as pc

        self.pa = pa
        self.pc = pc
        self.query = query
        self.schema = columns.schema
        self.features = columns.features
        self.feature_types = columns.feature_types
        self.label_type = columns.label_type
        self.label_keys = columns.label_keys
        self.with_share = columns.with_share
        self.numeric_inputs = columns.numeric_inputs
        self._device_labels = device_labels
        self.truth = truth
        self.truth_by_boot = by_boot(truth)

    def batches(self, records: Iterable[Any]) -> Iterator[Any]:
        """Arrow record batches of about :data:`BATCH_ROWS` predictions, in key order.

        A columnar record with numeric inputs becomes Arrow arrays straight from its arrays
        (no Python per prediction); other records are gathered row by row (:class:`RowColumns`)."""
        cols = RowColumns(len(self.features))
        built: list[Any] = []  # record batches, in key order, ahead of cols
        built_rows = 0
        truth = self.truth
        labelled_only = self.query.labelled_only
        sampling = self.query.sampling
        for r in records:
            try:
                body = _decode(r.payload_json)
            except msgspec.DecodeError:
                continue
            if not isinstance(body, dict):
                continue
            share = 1.0  # the export's sampling of this device's group
            if sampling is not None:
                share = sampling.share_of(self._device_labels.get(r.device_id, {}))
            if r.kind == "prediction":
                pid = r.prediction_id
                label = truth.get(pid) if pid is not None else None
                if labelled_only and label is None:
                    continue
                if sampling is not None and not sampling.keep(
                        r.device_id, int(r.epoch), int(r.seq), 1, share)[0]:
                    continue
                cols.add_one(r, pid, body, label, body.get("inputs"), share)
            else:
                kept = share * device_share(body)
                fast = self._columnar(r, body, share, kept) if self.numeric_inputs else None
                if fast is None:
                    cols.add_many(r, body, truth, labelled_only, sampling, share, kept)
                elif fast.num_rows:
                    if cols.n:
                        built.append(self._batch(cols))
                        built_rows += cols.n
                        cols = RowColumns(len(self.features))
                    built.append(fast)
                    built_rows += fast.num_rows
            if built_rows + cols.n >= BATCH_ROWS:
                yield self._combine(built, cols)
                built, built_rows, cols = [], 0, RowColumns(len(self.features))
        if built_rows + cols.n:
            yield self._combine(built, cols)

    def _combine(self, built: list[Any], cols: RowColumns) -> Any:
        if cols.n:
            built = [*built, self._batch(cols)]
        if len(built) == 1:
            return built[0]
        table = self.pa.Table.from_batches(built, schema=self.schema).combine_chunks()
        return table.to_batches()[0]

    def _columnar(self, r: Any, body: dict[str, Any], share: float, kept: float) -> Any:
        """A ``predictions`` record with float32 inputs (or none) as a record batch, or None
        for a record this path does not read (the row path then reads what it can)."""
        pa = self.pa
        pids: Any = body.get("pid")
        labels = body.get("labels")
        n = len(pids) if isinstance(pids, list) else 0
        if n == 0 or not isinstance(labels, list) or len(labels) != n:
            return None
        x = f32(body.get("inputs_f32"), n, len(self.features))
        if x is None and (body.get("inputs") is not None or body.get("inputs_f32") is not None):
            return None  # inputs of another shape: the row path decides what to keep
        try:
            p = np.asarray(pids, dtype=np.int64)
        except (ValueError, TypeError, OverflowError):
            return None
        t, lat = per_row_arrays(body.get("calls"), n, float(r.ts), r.latency_ms)
        scores = f32(body.get("confidence_f32"), n, 1)
        conf = scores[:, 0] if scores is not None else np.full(n, np.nan)
        boot = str(body.get("boot", ""))
        known, found = known_labels(self.truth_by_boot.get(boot), p)
        keep: Any = None
        if self.query.labelled_only:
            keep = found
        if self.query.sampling is not None:
            sampled = self.query.sampling.keep(r.device_id, int(r.epoch), int(r.seq), n, share)
            keep = sampled if keep is None else keep & sampled
        ints = int_array(labels) if self.label_type == pa.int64() else None
        prediction = pa.array(ints) if ints is not None else self._labels_array(labels)
        if not isinstance(known, np.ndarray):
            label = self._labels_array(known)
        elif self.label_type == pa.int64():
            label = pa.array(known, mask=~found)
        else:  # int labels for a column of another type: converted as the row path does
            label = self._labels_array([v if f else None for v, f in
                                        zip(known.tolist(), found.tolist(), strict=True)])
        if keep is not None and not keep.all():
            index = np.flatnonzero(keep)
            p, t, lat, conf = p[index], t[index], lat[index], conf[index]
            x = x[index] if x is not None else None
            prediction, label = prediction.take(index), label.take(index)
        k = len(p)
        ids = self.pc.binary_join_element_wise(boot, self.pc.cast(pa.array(p), pa.string()), "-")
        arrays = [_repeat(pa, r.device_id, k, pa.string())]
        device_labels = self._device_labels.get(r.device_id, {})
        for key in self.label_keys:
            arrays.append(_repeat(pa, device_labels.get(key), k, pa.string()))
        arrays += [_repeat(pa, r.model, k, pa.string()), _repeat(pa, r.version, k, pa.int64()),
                   _repeat(pa, int(r.epoch), k, pa.int64()),
                   _repeat(pa, int(r.seq), k, pa.int64()), ids.cast(pa.string()),
                   pa.array(t, pa.float64(), from_pandas=True),
                   _repeat(pa, float(r.received_at), k, pa.float64()),
                   pa.array(lat, pa.float64(), from_pandas=True), prediction,
                   pa.array(conf, pa.float64(), from_pandas=True), label]
        if self.with_share:
            arrays.append(_repeat(pa, kept, k, pa.float64()))
        for i in range(len(self.features)):
            arrays.append(pa.array(x[:, i], pa.float64(), from_pandas=True) if x is not None
                          else pa.nulls(k, pa.float64()))
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def _batch(self, c: RowColumns) -> Any:
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
        if self.with_share:
            arrays.append(pa.array(c.share, pa.float64()))
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
        return pa.array(floats(values), pa.float64())
    return array


def _repeat(pa: Any, value: Any, n: int, type_: Any) -> Any:
    return pa.repeat(pa.scalar(value, type_), n)


def _converter(label_type: Any, pa: Any) -> Callable[[list[Any]], list[Any]]:
    """Labels as the column's type; a value of another type is left empty."""
    if label_type == pa.int64():
        return lambda vs: [v if isinstance(v, int) and not isinstance(v, bool) else None
                           for v in vs]
    if label_type == pa.float64():
        return floats
    return lambda vs: [None if v is None else (v if isinstance(v, str) else json.dumps(v))
                       for v in vs]

