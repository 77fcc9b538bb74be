"""`edgewise data export` speed: predictions out of the controller's database into Parquet.

Usage: python bench/bench_export.py [--predictions 2000000] [--per-flush 1000] [--devices 10]

The database (SQLite, a fresh file) is filled the way the ingest fills it: agents' columnar
``predictions`` records (``--per-flush`` predictions each, iris-sized: 4 float32 inputs, a class,
a confidence), decoded and stored by ``TelemetryStore.store_group``, plus one feedback record per
10 predictions. Timed, in the same run:

* ``export``: :class:`controller.data.export.Exporter` -> Parquet (zstd), the whole model;
* ``raw write``: pyarrow writing the very same table, already in memory as Arrow columns,
  with the export's writer options (the Parquet writer's own speed: the ceiling of any export).

Goal: >= 1 million records/s. Results: ``bench/results/export.json`` and the ``export`` section
of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repo importable

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bench.common import (  # noqa: E402
    load_average,
    machine,
    machine_line,
    table,
    update_doc_section,
    write_result,
)
from controller.data.export import Exporter  # noqa: E402
from controller.data.export_query import ExportQuery  # noqa: E402
from controller.data.export_writers import parquet_options, write  # noqa: E402
from controller.fleet.ingest_wire import decode_telemetry  # noqa: E402
from controller.fleet.telemetry_store import TelemetryStore  # noqa: E402
from controller.storage import migrator  # noqa: E402
from controller.storage.db import Database  # noqa: E402
from edge_agent.telemetry.records import CallRecords, encode_pending  # noqa: E402
from edgewise_wire import ArtifactRef, Manifest, TensorSpec  # noqa: E402
from edgewise_wire.codec import encode_telemetry_spliced  # noqa: E402


def manifest() -> Manifest:
    return Manifest(model="iris", version=1, format="onnx", task="classification",
                    inputs=(TensorSpec("input", "float32", (None, 4)),),
                    outputs=(TensorSpec("label", "int64", (None,)),),
                    label_output="label", score_output=None, class_labels=(0, 1, 2),
                    feature_names=("sepal_length", "sepal_width", "petal_length",
                                   "petal_width"),
                    artifact=ArtifactRef("0" * 64, 1, 1024, ("0" * 64,)), smoke_tests=(),
                    smoke_tolerance=1e-4)


def fill(db: Database, predictions: int, per_flush: int, devices: int) -> None:
    store = TelemetryStore(db)
    rng = np.random.default_rng(0)
    per_device = predictions // devices
    for d in range(devices):
        device, boot = f"dev-{d:03d}", f"b{d:03d}"
        seq = 0
        for first in range(0, per_device, per_flush):
            n = min(per_flush, per_device - first)
            x = rng.normal(5, 1, size=(n, 4)).astype(np.float32)
            call = CallRecords(1_790_000_000.0 + first, "iris", 1, first, 0.05,
                               rng.integers(0, 3, n).tolist(), rng.random(n).tolist(),
                               range(n), x)
            feedback = [{"kind": "feedback", "ts": 1_790_000_001.0 + first, "model": "iris",
                         "version": 1, "prediction_id": f"{boot}-{first + i}", "truth": 1,
                         "correct": True} for i in range(0, n, 10)]
            bodies = encode_pending([call, *feedback], boot, columnar=True)
            numbered = [(seq + i + 1, b) for i, b in enumerate(bodies)]
            payload = encode_telemetry_spliced(seq + 1, seq + len(bodies), numbered, 0, 7,
                                               ts=1.0)
            assert payload is not None
            store.store_group([decode_telemetry(payload, device, 1.0)])
            seq += len(bodies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", type=int, default=2_000_000)
    parser.add_argument("--per-flush", type=int, default=1000)
    parser.add_argument("--devices", type=int, default=10)
    args = parser.parse_args()
    info = machine()
    work = Path(tempfile.mkdtemp(prefix="ew-bench-export-"))
    try:
        db = Database(str(work / "c.db"))
        migrator.upgrade(db)
        t0 = time.perf_counter()
        fill(db, args.predictions, args.per_flush, args.devices)
        fill_s = time.perf_counter() - t0
        out = work / "iris.parquet"
        t0, cpu0 = time.perf_counter(), time.process_time()
        summary = write(Exporter(db, manifest(), ExportQuery("iris")), "parquet", out)
        export_s = time.perf_counter() - t0
        # the CPU it took: on a shared machine the wall clock also counts other work's turns
        export_cpu_s = time.process_time() - cpu0
        table_ = pq.read_table(out)
        assert table_.num_rows == summary.rows == args.predictions // args.devices * args.devices
        # the ceiling: the same table from memory
        t0, cpu0 = time.perf_counter(), time.process_time()
        pq.write_table(table_, work / "raw.parquet", **parquet_options(table_.schema))
        raw_s = time.perf_counter() - t0
        raw_cpu_s = time.process_time() - cpu0
        size = out.stat().st_size
        db.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = summary.rows
    result = {"machine": info, "setup": vars(args), "rows": rows, "labelled": summary.labelled,
              "fill_s": round(fill_s, 2), "export_s": round(export_s, 3),
              "raw_write_s": round(raw_s, 3), "export_cpu_s": round(export_cpu_s, 3),
              "raw_write_cpu_s": round(raw_cpu_s, 3), "parquet_bytes": size,
              "export_records_per_cpu_s": round(rows / export_cpu_s),
              "export_records_per_s": round(rows / export_s),
              "raw_write_records_per_s": round(rows / raw_s),
              "load_average_1m_at_end": round(load_average(), 2)}
    write_result("export", result)
    header = ["path", "records/s", "seconds", "CPU s", "records per CPU s"]
    lines = [["export: database -> Parquet (`edgewise data export`)",
              f"**{rows / export_s:,.0f}**", f"{export_s:.2f}", f"{export_cpu_s:.2f}",
              f"{rows / export_cpu_s:,.0f}"],
             ["raw: the same Arrow table from memory -> Parquet", f"{rows / raw_s:,.0f}",
              f"{raw_s:.2f}", f"{raw_cpu_s:.2f}", f"{rows / raw_cpu_s:,.0f}"]]
    print(table(header, lines))
    update_doc_section("export", f"""## Export to Parquet (`bench/bench_export.py`)

{rows:,} predictions of {args.devices} devices stored as the ingest stores columnar records
({args.per_flush:,} predictions per record; 4 float32 inputs, a class, a confidence; a label
for one in ten), exported to Parquet (zstd, {size / 1e6:.1f} MB) with every column of
`edgewise data export`. Goal: 1 million records/s. "CPU s" is the process's CPU time (all
its threads; the Parquet writer compresses in several), which other work on the machine does not
lengthen as it does the wall clock.

{table(header, lines)}

Machine: {machine_line(info)}; load average {info['load_average_1m_at_start']} at start,
{result['load_average_1m_at_end']} at end.
""")


if __name__ == "__main__":
    main()
