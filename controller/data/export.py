"""The predictions the fleet made, as a training set: one row per prediction.

An :class:`Exporter` is one export. It reads what the export covers from the database
(:mod:`controller.data.export_source`), fixes its columns (:mod:`controller.data.export_schema`)
and hands out its rows as Arrow record batches (:mod:`controller.data.export_batches`);
:mod:`controller.data.export_writers` writes them as Parquet or CSV.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from controller.data.export_batches import BatchBuilder
from controller.data.export_query import ExportQuery
from controller.data.export_schema import export_columns
from controller.data.export_source import (
    device_labels,
    prediction_records,
    sampled_on_devices,
    true_labels,
)
from controller.storage.db import Database
from edgewise_wire import Manifest


class Exporter:
    """Reads one export's rows out of the database as Arrow record batches."""

    def __init__(self, db: Database, manifest: Manifest, query: ExportQuery) -> None:
        self.db = db
        self.query = query
        self.manifest = manifest
        self.device_labels = device_labels(db, query.selector)
        label_keys = sorted({k for labels in self.device_labels.values() for k in labels})
        # a row stands for 1/sample_share predictions: the export's sampling times the
        # device's (a columnar record sampled on the device states its "share")
        with_share = (query.sampling is not None
                      or sampled_on_devices(db, query.model, query.version))
        self.columns = export_columns(manifest, label_keys, with_share)
        self.schema = self.columns.schema
        self.truth = true_labels(db, query.model)

    def batches(self) -> Iterator[Any]:
        """Arrow record batches of the export's rows, in (device, epoch, seq) order."""
        builder = BatchBuilder(self.columns, self.device_labels, self.truth, self.query)
        yield from builder.batches(prediction_records(self.db, self.query, self.device_labels))
