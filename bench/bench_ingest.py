"""Telemetry ingest against the database's own speed, on SQLite and PostgreSQL.

Usage: python bench/bench_ingest.py [--agents 8] [--records 5000] [--backends sqlite,postgresql]

For each backend, in one run:

* ``end to end``: agents with pre-filled outboxes drain over a real Mosquitto into a controller
  process (``edgewise controller serve``); the clock stops when every outbox is empty, i.e. every
  record committed and acknowledged (stored counts checked). The same scenario as
  ``bench/bench_replicas.py`` (whose ``run_setup`` it calls). Agents, broker, controller and
  (for PostgreSQL) the server share the machine.
* ``ingest core``: the controller's own path without MQTT, in this process: the very payloads
  decoded and checked (:func:`controller.fleet.ingest_wire.decode_telemetry`) and stored in
  groups of 10 messages (:meth:`TelemetryStore.store_group`), duplicates handled.
* ``raw``: the same decoded rows written with nothing else in one process: SQLite ``executemany``
  of a plain INSERT, 5,000 rows per transaction (WAL, synchronous=NORMAL, as the controller);
  PostgreSQL ``COPY`` straight into the table, 5,000 rows per transaction. Same schema and indexes.

The goal: end to end >= 0.5x raw. Results: ``bench/results/ingest.json`` and the ``ingest``
section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repo importable

from bench.bench_replicas import drop_pg_database, fresh_pg_database, run_setup  # noqa: E402
from bench.bench_telemetry import BATCH, make_records  # noqa: E402
from bench.common import (  # noqa: E402
    load_average,
    machine,
    machine_line,
    table,
    update_doc_section,
    write_result,
)
from controller.fleet.ingest_wire import TELEMETRY_COLUMNS, DecodedBatch, decode_telemetry  # noqa: E402
from controller.fleet.telemetry_store import TelemetryStore  # noqa: E402
from controller.storage import migrator  # noqa: E402
from controller.storage.db import Database  # noqa: E402
from edgewise_wire.codec import encode_telemetry_spliced  # noqa: E402

RAW_CHUNK = 5000
GROUP = 10  # messages per transaction in the ingest-core run


def payloads(agents: int, records: int) -> list[tuple[str, bytes]]:
    """What the agents send: the outbox's compact JSON bodies spliced into batches."""
    import json

    enc = json.JSONEncoder(separators=(",", ":")).encode
    out = []
    for i in range(agents):
        device = f"bench-ingest-{i:03d}"
        bodies = [enc(r) for r in make_records(records, i)]
        for j in range(0, records, BATCH):
            chunk = [(j + k + 1, b) for k, b in enumerate(bodies[j:j + BATCH])]
            data = encode_telemetry_spliced(chunk[0][0], chunk[-1][0], chunk, 0, 4242 + i,
                                            ts=1.0)
            assert data is not None
            out.append((device, data))
    return out


def fresh(backend: str, workdir: Path, tag: str) -> tuple[str, Any]:
    """(url, cleanup) of an empty database at the current schema."""
    if backend == "sqlite":
        url = str(workdir / f"{tag}.db")
        cleanup = None
    else:
        admin, name, url = fresh_pg_database()
        cleanup = (admin, name)
    db = Database(url)
    migrator.upgrade(db)
    db.dispose()
    return url, cleanup


def done(cleanup: Any) -> None:
    if cleanup is not None:
        drop_pg_database(*cleanup)


def register(url: str, devices: set[str]) -> None:
    db = Database(url)
    TelemetryStore(db).store_group([DecodedBatch(d, 1, 1, 0, 0, 1.0, []) for d in sorted(devices)])
    db.dispose()


def ingest_core(url: str, messages: list[tuple[str, bytes]]) -> float:
    db = Database(url)
    store = TelemetryStore(db)
    started = time.perf_counter()
    for i in range(0, len(messages), GROUP):
        store.store_group([decode_telemetry(p, d, 2.0) for d, p in messages[i:i + GROUP]])
    elapsed = time.perf_counter() - started
    db.dispose()
    return elapsed


def raw_sqlite(url: str, rows: list[tuple[Any, ...]]) -> float:
    conn = sqlite3.connect(url, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    sql = (f"INSERT INTO telemetry ({', '.join(TELEMETRY_COLUMNS)}) VALUES "
           f"({', '.join('?' * len(TELEMETRY_COLUMNS))})")
    started = time.perf_counter()
    for i in range(0, len(rows), RAW_CHUNK):
        conn.execute("BEGIN")
        conn.executemany(sql, rows[i:i + RAW_CHUNK])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def raw_copy(url: str, rows: list[tuple[Any, ...]]) -> float:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        for i in range(0, len(rows), RAW_CHUNK):
            with conn.cursor() as cur, cur.copy(
                    f"COPY telemetry ({', '.join(TELEMETRY_COLUMNS)}) FROM STDIN") as copy:
                for row in rows[i:i + RAW_CHUNK]:
                    copy.write_row(row)
            conn.commit()
        return time.perf_counter() - started


def count(url: str) -> int:
    db = Database(url)
    n = TelemetryStore(db).count()
    db.dispose()
    return n


def run_backend(backend: str, workdir: Path, agents: int, records: int) -> dict[str, Any]:
    total = agents * records
    messages = payloads(agents, records)
    rows = [r for d, p in messages for r in decode_telemetry(p, d, 2.0).rows]
    devices = {d for d, _ in messages}

    url, cleanup = fresh(backend, workdir, "raw")
    try:
        register(url, devices)
        raw_s = (raw_sqlite if backend == "sqlite" else raw_copy)(url, rows)
        assert count(url) == total
    finally:
        done(cleanup)

    url, cleanup = fresh(backend, workdir, "core")
    try:
        core_s = ingest_core(url, messages)
        assert count(url) == total
    finally:
        done(cleanup)

    if backend == "sqlite":
        e2e = run_setup(workdir, "e2e-sqlite", 1, None, agents, records)
    else:
        admin, name, pg_url = fresh_pg_database()
        try:
            e2e = run_setup(workdir, "e2e-pg", 1, pg_url, agents, records)
        finally:
            drop_pg_database(admin, name)
    raw_rps, core_rps = total / raw_s, total / core_s
    return {"backend": backend, "records": total,
            "raw_records_per_s": round(raw_rps), "core_records_per_s": round(core_rps),
            "e2e_records_per_s": e2e["records_per_s"],
            "controller_cpu_s_per_1000_records": e2e["cpu_s_per_1000_records"],
            "ratio_core_over_raw": round(core_rps / raw_rps, 3),
            "ratio_e2e_over_raw": round(e2e["records_per_s"] / raw_rps, 3),
            "e2e": e2e}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--records", type=int, default=5000, help="records per agent")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    info = machine()
    workdir = Path(tempfile.mkdtemp(prefix="ew-bench-ingest-"))
    results = []
    try:
        for backend in args.backends.split(","):
            results.append(run_backend(backend, workdir, args.agents, args.records))
            print(results[-1], flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {"machine": info, "setup": {"agents": args.agents, "records_per_agent": args.records,
                                         "records_per_message": BATCH, "group_messages": GROUP,
                                         "raw_chunk": RAW_CHUNK, "cpus": os.cpu_count()},
              "results": results, "load_average_1m_at_end": round(load_average(), 2)}
    write_result("ingest", result)
    rows = [[r["backend"], f"{r['raw_records_per_s']:,}", f"{r['core_records_per_s']:,}",
             f"{r['e2e_records_per_s']:,}", f"{r['ratio_core_over_raw']:.2f}",
             f"**{r['ratio_e2e_over_raw']:.2f}**", f"{r['controller_cpu_s_per_1000_records']:.3f}"]
            for r in results]
    header = ["backend", "raw records/s", "ingest core records/s", "end to end records/s",
              "core / raw", "end to end / raw (goal 0.5)", "controller CPU s per 1,000 records"]
    print(table(header, rows))
    update_doc_section("ingest", f"""## Telemetry ingest against the database (`bench/bench_ingest.py`)

{args.agents} agents, {args.records:,} prediction records each (about 200 bytes of JSON, {BATCH}
per message). *raw*: the same decoded rows written by one process with nothing else (SQLite
`executemany` of a plain INSERT, PostgreSQL `COPY` into the table; {RAW_CHUNK:,} rows per
transaction, same schema and indexes). *ingest core*: the controller's path without MQTT in one
process: each payload decoded and checked with msgspec, {GROUP} messages per transaction
(`TelemetryStore.store_group`: SQLite `executemany` with ON CONFLICT DO NOTHING, PostgreSQL
`COPY` into a staging table then `INSERT ... SELECT ... ON CONFLICT DO NOTHING`).
*end to end*: agents with pre-filled outboxes drain over Mosquitto into a controller process
(group commit, acks after it); the clock stops when every outbox is empty (all committed and
acknowledged). Agents, broker, controller and PostgreSQL share the machine's 2 cores.

{table(header, rows)}

Machine: {machine_line(info)}; load average {info['load_average_1m_at_start']} at start,
{result['load_average_1m_at_end']} at end.
""")


if __name__ == "__main__":
    main()
