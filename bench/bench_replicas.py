"""Telemetry ingestion with one controller on SQLite, and one and two replicas on PostgreSQL.

Same run, same machine, same Mosquitto build: for each setup a fresh broker, fresh database and
fresh controller process(es) (``--share-group`` for the replicas); N agents with pre-filled
outboxes drain into the controller(s). The clock stops when every outbox is empty (every record
committed and acknowledged); the stored count per device is checked. Controller CPU is read
from /proc for every replica process. "CPU s per 1,000 records" is also the number of cores
the controllers need per 1,000 devices that each send one record per second.

Writes ``bench/results/replicas.json`` and the ``replicas`` section of ``docs/benchmarks.md``.
PostgreSQL: ``EDGEWISE_PG_ADMIN_URL`` (default postgresql+psycopg://postgres@127.0.0.1:5432/test);
a database is created for each PostgreSQL setup and dropped after.

Example: .venv/bin/python bench/bench_replicas.py --agents 8 --records 5000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repo importable

import sqlalchemy as sa  # noqa: E402

from bench.bench_telemetry import fill_outbox, make_records  # noqa: E402
from bench.common import (  # noqa: E402
    load_average,
    machine,
    machine_line,
    table,
    update_doc_section,
    write_result,
)
from controller.cli.client import ControllerClient  # noqa: E402
from edge_agent.agent import EdgeAgent  # noqa: E402
from edge_agent.config import AgentConfig  # noqa: E402
from simulator.broker import mosquitto_broker  # noqa: E402
from simulator.demo import start_controller, stop_process  # noqa: E402
from simulator.fleet import sample_process  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "EDGEWISE_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def run_setup(workdir: Path, name: str, replicas: int, db_url: str | None, agents: int,
              records: int) -> dict[str, Any]:
    broker = mosquitto_broker(workdir / name / "broker")
    broker.start()
    procs: list[Any] = []
    urls: list[str] = []
    try:
        extra = ["--artifact-dir", str(workdir / name / "artifacts")]
        if db_url:
            extra += ["--db-url", db_url]
        if replicas > 1:
            extra += ["--share-group", "bench"]
        # replicas start together (the schema is created once, under the migration lock)
        errors: list[BaseException] = []

        def start(i: int) -> None:
            try:
                proc, url = start_controller(workdir / name / f"controller-{i}", broker,
                                             extra_args=extra)
                procs.append(proc)
                urls.append(url)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(i,)) for i in range(replicas)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        if errors or len(procs) != replicas:
            raise SystemExit(f"{name}: a controller did not start: {errors}")
        data = workdir / name / "agents"
        ids = [f"bench-{name}-{i:03d}" for i in range(agents)]
        for i, device in enumerate(ids):
            (data / device).mkdir(parents=True)
            fill_outbox(data / device / "outbox.sqlite", make_records(records, i))

        async def drain() -> float:
            fleet = [EdgeAgent(AgentConfig(device_id=d, data_dir=data / d,
                                           broker=broker.address,
                                           telemetry_flush_interval_s=0.05,
                                           outbox_max_records=records + 1000)) for d in ids]
            started = time.perf_counter()
            await asyncio.gather(*(a.start() for a in fleet))
            while any(a.outbox is not None and a.outbox.stats().pending for a in fleet):
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - started
            await asyncio.gather(*(a.stop() for a in fleet))
            return elapsed

        before = [sample_process(p.pid) for p in procs]
        elapsed = asyncio.run(drain())
        after = [sample_process(p.pid) for p in procs]
        cpu_s = [round(b.cpu_s - a.cpu_s, 2) for a, b in zip(before, after, strict=True)]
        client = ControllerClient(urls[0])
        for device in ids:
            stored = client.telemetry_count(device)
            if stored != records:
                raise SystemExit(f"{name}/{device}: {stored} records stored, not {records}")
        batches = [int(ControllerClient(u).health()["bridge"].get("batches", 0)) for u in urls]
        total = agents * records
        return {"setup": name, "replicas": replicas, "seconds": round(elapsed, 3),
                "records_per_s": round(total / elapsed), "controller_cpu_s": cpu_s,
                "cpu_s_per_1000_records": round(1000 * sum(cpu_s) / total, 4),
                "batches_per_replica": batches}
    finally:
        for p in procs:
            stop_process(p)
        broker.stop()


def fresh_pg_database() -> tuple[sa.Engine, str, str]:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT",
                             connect_args={"connect_timeout": 3})
    name = f"ew_bench_{secrets.token_hex(5)}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return admin, name, admin.url.set(database=name).render_as_string(hide_password=False)


def drop_pg_database(admin: sa.Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Example: .venv/bin/python bench/bench_replicas.py "
                                            "--agents 8 --records 5000")
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--records", type=int, default=5000, help="records per agent")
    args = parser.parse_args()
    info = machine()
    workdir = Path(tempfile.mkdtemp(prefix="ew-bench-replicas-"))
    rows: list[dict[str, Any]] = []
    try:
        rows.append(run_setup(workdir, "sqlite-1", 1, None, args.agents, args.records))
        for replicas in (1, 2):
            admin, name, url = fresh_pg_database()
            try:
                rows.append(run_setup(workdir, f"postgresql-{replicas}", replicas, url,
                                      args.agents, args.records))
            finally:
                drop_pg_database(admin, name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {"machine": info, "agents": args.agents, "records_per_agent": args.records,
              "results": rows, "load_average_1m_at_end": round(load_average(), 2)}
    write_result("replicas", result)
    header = ["setup", "records/s", "seconds", "controller CPU s (per replica)",
              "CPU s per 1,000 records", "batches per replica"]
    cells = [[r["setup"], f"{r['records_per_s']:,}", f"{r['seconds']:.2f}",
              " + ".join(f"{c:.2f}" for c in r["controller_cpu_s"]),
              f"{r['cpu_s_per_1000_records']:.3f}",
              " / ".join(str(b) for b in r["batches_per_replica"])] for r in rows]
    print(table(header, cells))
    update_doc_section("replicas", f"""## Replicas: ingestion on SQLite and PostgreSQL (`bench/bench_replicas.py`)

{args.agents} agents, {args.records:,} prediction records each (about 200 bytes of JSON, 500 per
message), drained from pre-filled outboxes into: one controller on SQLite; one controller on
PostgreSQL; two replicas on PostgreSQL with a share group. Clock: agents' start to every outbox
empty (all committed and acknowledged; stored counts checked). Controller CPU from /proc, summed
over the replicas; "CPU s per 1,000 records" is also the cores needed per 1,000 devices sending
one record per second each. Broker, PostgreSQL server, agents and controllers share the
machine's 2 cores, so the two-replica figure shows correctness and the split more than a
speed-up. Machine: {machine_line(info)}; load average {info['load_average_1m_at_start']} at
start, {result['load_average_1m_at_end']} at end.

{table(header, cells)}
""")


if __name__ == "__main__":
    main()
