"""The predictions the fleet made, as a training set: one row per prediction, Parquet or CSV.

Columns: ``device_id``, ``device.<key>`` for every label of the devices exported (operator
labels over the device's own), ``model``, ``version``, ``epoch`` and ``seq`` (the record's key
at the controller), ``prediction_id``, ``ts`` (when the device predicted, Unix seconds),
``received_at``, ``latency_ms``, ``prediction``, ``probability`` (the predicted class's, when
the model gives scores), ``label`` (the true label from feedback, when it came back), then one
column per input feature, named as in the manifest (``feature_names``, or the input schema's
fields). Inputs are known for predictions recorded columnar (agents with
``telemetry_columnar``, the default); for the others those columns are empty. A
``sample_share`` column follows ``label`` when the export samples or a record was sampled on its
device (its ``share``): a row stands for 1/sample_share predictions.

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
import zlib
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


class _Feedback(msgspec.Struct):
    truth: Any = None  # the rest of a feedback record is skipped unread


_decode_truth = msgspec.json.Decoder(_Feedback).decode


@dataclass(frozen=True)
class ExportQuery:
    model: str
    version: int | None = None  # None: every version
    since: float | None = None  # Unix seconds; None: from the first record
    selector: str | None = None
    labelled_only: bool = False
    sampling: Sampling | None = None  # None: every prediction


@dataclass(frozen=True)
class Sampling:
    """Which share of the predictions an export keeps, per group of devices.

    A group is the value of the device label ``by`` (every device is one group without it);
    ``shares`` gives a group its own share, the others keep ``share``. Whether a prediction is
    kept depends only on ``seed`` and its key (device, epoch, seq, row in the record), so the
    same query gives the same rows, and each group keeps its share whatever the others do.
    The export gains a ``sample_share`` column: a row stands for 1/share predictions."""

    share: float
    by: str | None = None
    shares: tuple[tuple[str, float], ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        for value in (self.share, *(v for _, v in self.shares)):
            if not (isinstance(value, (int, float)) and 0.0 < value <= 1.0):
                raise ValidationError(f"a sampling share must be within (0, 1], not {value!r}")

    def share_of(self, labels: dict[str, str]) -> float:
        if self.by is None:
            return self.share
        return dict(self.shares).get(labels.get(self.by, ""), self.share)

    def keep(self, device_id: str, epoch: int, seq: int, n: int, share: float) -> Any:
        """A boolean mask over the record's n predictions."""
        if share >= 1.0:
            return np.ones(n, dtype=bool)
        key = [self.seed & _U64, zlib.crc32(device_id.encode()), epoch & _U64, seq & _U64]
        return np.random.default_rng(key).random(n) < share


_U64 = (1 << 64) - 1


def parse_sampling(share: float | None, by: str | None, group_shares: Sequence[str],
                   seed: int = 0) -> Sampling | None:
    """The sampling asked for by ``--sample SHARE [--sample-by LABEL] [--sample-share
    GROUP=SHARE ...] [--seed N]`` (and the REST parameters of the same names); None when
    nothing is sampled."""
    if share is None and not group_shares:
        return None
    shares: list[tuple[str, float]] = []
    for item in group_shares:
        group, sep, value = item.rpartition("=")
        try:
            shares.append((group, float(value)))
        except ValueError:
            sep = ""
        if not sep or not group:
            raise ValidationError(f"sample share {item!r}: write GROUP=SHARE, e.g. canary=0.5")
    if shares and not by:
        raise ValidationError("a share per group needs the label that names the groups "
                              "(sample_by, e.g. --sample-by group)")
    return Sampling(1.0 if share is None else share, by or None, tuple(shares), seed)


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
    if q.sampling is not None:
        parts.append("in the sample")
    return " ".join(parts)


class Exporter:
    """Reads one export's rows out of the database as Arrow record batches."""

    def __init__(self, db: Database, manifest: Manifest, query: ExportQuery) -> None:
        import pyarrow as pa  # the controller's [controller] extra; only exports need it
        import pyarrow.compute as pc

        self.pa = pa
        self.pc = pc
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
        # a row stands for 1/sample_share predictions: the export's sampling times the
        # device's (a columnar record sampled on the device states its "share")
        self.with_share = query.sampling is not None or self._sampled_on_devices()
        if self.with_share:
            fields.append(("sample_share", pa.float64()))
        taken = {name for name, _ in fields}
        fields += [(f if f not in taken else f"input.{f}", t)
                   for f, t in zip(self.features, self.feature_types, strict=True)]
        self.schema = pa.schema(fields)
        self.truth = self._labels()
        self.truth_by_boot = _by_boot(self.truth)
        self.numeric_inputs = all(t == pa.float64() for t in self.feature_types)

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
                    truth = _decode_truth(payload).truth
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
                out[str(pid)] = truth
        return out

    def _sampled_on_devices(self) -> bool:
        """Whether any of the model's columnar records was sampled on its device."""
        t = telemetry.c
        q = sa.select(t.seq).where(t.kind == "predictions", t.model == self.query.model,
                                   t.payload_json.like('%"share":%')).limit(1)
        if self.query.version is not None:
            q = q.where(t.version == self.query.version)
        with self.db.read() as conn:
            return conn.execute(q).first() is not None

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
        """Arrow record batches of about :data:`BATCH_ROWS` predictions, in key order.

        A columnar record with numeric inputs becomes Arrow arrays straight from its arrays
        (no Python per prediction); other records are gathered row by row (:class:`_Columns`)."""
        cols = _Columns(len(self.features))
        built: list[Any] = []  # record batches, in key order, ahead of cols
        built_rows = 0
        truth = self.truth
        labelled_only = self.query.labelled_only
        sampling = self.query.sampling
        for r in self._records():
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
                kept = share * _device_share(body)
                fast = self._columnar(r, body, share, kept) if self.numeric_inputs else None
                if fast is None:
                    cols.add_many(r, body, truth, labelled_only, sampling, share, kept)
                elif fast.num_rows:
                    if cols.n:
                        built.append(self._batch(cols))
                        built_rows += cols.n
                        cols = _Columns(len(self.features))
                    built.append(fast)
                    built_rows += fast.num_rows
            if built_rows + cols.n >= BATCH_ROWS:
                yield self._combine(built, cols)
                built, built_rows, cols = [], 0, _Columns(len(self.features))
        if built_rows + cols.n:
            yield self._combine(built, cols)

    def _combine(self, built: list[Any], cols: _Columns) -> Any:
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
        x = _f32(body.get("inputs_f32"), n, len(self.features))
        if x is None and (body.get("inputs") is not None or body.get("inputs_f32") is not None):
            return None  # inputs of another shape: the row path decides what to keep
        try:
            p = np.asarray(pids, dtype=np.int64)
        except (ValueError, TypeError, OverflowError):
            return None
        t, lat = _per_row_arrays(body.get("calls"), n, float(r.ts), r.latency_ms)
        scores = _f32(body.get("confidence_f32"), n, 1)
        conf = scores[:, 0] if scores is not None else np.full(n, np.nan)
        boot = str(body.get("boot", ""))
        known, found = _known(self.truth_by_boot.get(boot), p)
        keep: Any = None
        if self.query.labelled_only:
            keep = found
        if self.query.sampling is not None:
            sampled = self.query.sampling.keep(r.device_id, int(r.epoch), int(r.seq), n, share)
            keep = sampled if keep is None else keep & sampled
        ints = _ints(labels) if self.label_type == pa.int64() else None
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
        self.share: list[float] = []
        self.inputs: list[list[Any]] = [[] for _ in range(features)]

    def add_one(self, r: Any, pid: str | None, body: dict[str, Any], label: Any,
                inputs: Any, share: float) -> None:
        self._keys(r, 1)
        self.share.append(share)
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
                 labelled_only: bool, sampling: Sampling | None, share: float,
                 kept: float) -> None:
        """``share``: the export's sampling; ``kept``: the share a row stands for (the
        export's times the device's)."""
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
        if sampling is not None:
            sampled = sampling.keep(r.device_id, int(r.epoch), int(r.seq), n, share)
            keep = [i for i in keep if sampled[i]]
        if len(keep) < n:
            if not keep:
                return
            ids, known, t, lat, conf, labels = (
                [col[i] for i in keep] for col in (ids, known, t, lat, conf, labels))
            cols = [[c[i] for i in keep] for c in cols]
        k = len(keep)
        self._keys(r, k)
        self.share.extend([kept] * k)
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


def _per_row_arrays(calls: Any, n: int, ts: float, latency: float | None) -> tuple[Any, Any]:
    """:func:`_per_row` as float arrays (NaN for an unknown latency), repeated in C."""
    if isinstance(calls, list) and calls and all(
            isinstance(seg, list) and len(seg) == 3 and isinstance(seg[0], int)
            and seg[0] >= 0 and isinstance(seg[1], (int, float))
            and (seg[2] is None or isinstance(seg[2], (int, float))) for seg in calls):
        counts = np.array([seg[0] for seg in calls], dtype=np.int64)
        if int(counts.sum()) == n:
            t = np.repeat(np.array([float(seg[1]) for seg in calls]), counts)
            lat = np.repeat(np.array([np.nan if seg[2] is None else float(seg[2])
                                      for seg in calls]), counts)
            return t, lat
    return np.full(n, ts), np.full(n, np.nan if latency is None else float(latency))


def _by_boot(truth: dict[str, Any]) -> dict[str, tuple[Any, list[Any]]]:
    """prediction id ``<boot>-<n>`` -> label, regrouped as boot -> (sorted n, labels) for
    the columnar records' look-up by array (labels as an int64 array when all are ints)."""
    grouped: dict[str, dict[int, Any]] = {}
    for pid, value in truth.items():
        boot, _, number = pid.rpartition("-")
        if boot and number.isdigit():
            grouped.setdefault(boot, {})[int(number)] = value
    out = {}
    for boot, labels in grouped.items():
        keys = np.array(sorted(labels), dtype=np.int64)
        values: Any = [labels[int(k)] for k in keys]
        ints = _ints(values)
        out[boot] = (keys, ints if ints is not None else values)
    return out


def _ints(values: list[Any]) -> Any:
    """``values`` as an int64 array when every one is an int (not a bool), else None."""
    array = np.array(values)
    return array.astype(np.int64) if array.ndim == 1 and array.dtype.kind == "i" else None


def _known(boot_truth: tuple[Any, Any] | None, pids: Any) -> tuple[Any, Any]:
    """The true label of each prediction number, and the mask of those that have one: an
    int64 array (zero where unknown) when the labels are ints, else a list (None where
    unknown)."""
    n = len(pids)
    if boot_truth is None or n == 0:
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    keys, values = boot_truth
    at = np.searchsorted(keys, pids)
    found = at < len(keys)
    found[found] = keys[at[found]] == pids[found]
    if isinstance(values, np.ndarray):
        known_ints = np.zeros(n, dtype=np.int64)
        known_ints[found] = values[at[found]]
        return known_ints, found
    known: list[Any] = [None] * n
    for i in np.flatnonzero(found).tolist():
        known[i] = values[int(at[i])]
    return known, found


def _repeat(pa: Any, value: Any, n: int, type_: Any) -> Any:
    return pa.repeat(pa.scalar(value, type_), n)


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
    batches = _nonempty_batches(exporter)
    rows = labelled = 0
    devices_seen: set[str] = set()
    writer = _writer(exporter, fmt, sink)
    try:
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
            labelled += batch.num_rows - batch.column("label").null_count
            devices_seen.update(batch.column("device_id").unique().to_pylist())
    finally:
        writer.close()
    return ExportSummary(rows, len(devices_seen), labelled, exporter.schema.names)


def _nonempty_batches(exporter: Exporter) -> Iterator[Any]:
    """The export's record batches; raises :class:`EmptyExport` at once, before a writer is
    opened, when no row matched."""
    batches = exporter.batches()
    first = next(batches, None)
    if first is None:
        raise EmptyExport(describe(exporter.query))
    return _chain(first, batches)


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def parquet_options(schema: Any) -> dict[str, Any]:
    """How exports are written to Parquet: zstd, and dictionaries for the repeated strings
    (device, its labels, model, string labels) only; on unique ids and measured floats a
    dictionary costs more than it saves (measured: ~5x the write speed, and a smaller file,
    than dictionaries on every column)."""
    import pyarrow as pa

    repeated = [f.name for f in schema
                if pa.types.is_string(f.type) and f.name != "prediction_id"]
    return {"compression": "zstd", "use_dictionary": repeated}


def _writer(exporter: Exporter, fmt: str, sink: BinaryIO | Path) -> Any:
    target: Any = str(sink) if isinstance(sink, Path) else sink
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(target, exporter.schema, **parquet_options(exporter.schema))
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
    batches = _nonempty_batches(exporter)
    writer = _writer(exporter, fmt, sink)
    for batch in batches:
        writer.write_batch(batch)
        if chunks:
            yield b"".join(chunks)
            chunks.clear()
    writer.close()
    if chunks:
        yield b"".join(chunks)


def _device_share(body: dict[str, Any]) -> float:
    """The share of predictions the device kept records of when it wrote this columnar record
    (its group's sampling, set from the controller, or its own prediction_sample_rate)."""
    share = body.get("share", 1.0)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 < share <= 1.0:
        return 1.0
    return float(share)
