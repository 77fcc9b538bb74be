"""The row path of an export: the columns of one record batch gathered in Python lists, for the
records the columnar path does not take (single predictions, non-numeric inputs, inputs as
JSON lists)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from controller.data.export_fields import f32, per_row
from controller.data.export_query import Sampling


class RowColumns:
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
        t, lat = per_row(body.get("calls"), n, float(r.ts), r.latency_ms)
        scores = f32(body.get("confidence_f32"), n, 1)
        conf: list[Any] = scores[:, 0].tolist() if scores is not None else [None] * n
        x = f32(body.get("inputs_f32"), n, self.features)
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

