"""Telemetry ingestion with one controller on SQLite, and one and two replicas on PostgreSQL.

Same run, same machine, same Mosquitto build: for each setup a fresh broker, fresh database and
fresh controller process(es) (``--share-group`` for the replicas); N agents with pre-filled
outboxes drain into the controller(s). The clock stops when every outbox is empty (every record
committed and acknowledged); the stored count per device is checked. Controller CPU is read
from /proc for every replica process. "CPU s per 1,000 records" is also the number of cores
the controllers need per 1,000 devices that each send one record per second. The ratio of two
PostgreSQL replicas to one is printed against the goal (1.7x); "cores busy" per process
(controllers, broker, the agents in this process) shows what limits the rate.

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

GOAL_RATIO = 1.7
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

        assert broker.proc is not None
        watched = [p.pid for p in procs] + [broker.proc.pid]
        before = [sample_process(pid) for pid in watched]
        agents_cpu = time.process_time()
        elapsed = asyncio.run(drain())
        agents_cpu = time.process_time() - agents_cpu
        after = [sample_process(pid) for pid in watched]
        spent = [round(b.cpu_s - a.cpu_s, 2) for a, b in zip(before, after, strict=True)]
        cpu_s, broker_cpu = spent[:-1], spent[-1]
        # the agents add records of their own (an error record, say) to the prefilled ones:
        # the check counts the prefilled prediction records
        stored = stored_predictions(db_url or f"sqlite:///{workdir / name / 'controller-0'}"
                                                 "/controller.sqlite")
        for device in ids:
            if stored.get(device) != records:
                raise SystemExit(f"{name}/{device}: {stored.get(device)} prediction records "
                                 f"stored, not {records}")
        batches = [int(ControllerClient(u).health()["bridge"].get("batches", 0)) for u in urls]
        total = agents * records
        return {"setup": name, "replicas": replicas, "seconds": round(elapsed, 3),
                "records_per_s": round(total / elapsed), "controller_cpu_s": cpu_s,
                "cpu_s_per_1000_records": round(1000 * sum(cpu_s) / total, 4),
                "batches_per_replica": batches,
                # cores busy over the drain: which process limits the rate
                "cores_busy": {"controllers": round(sum(cpu_s) / elapsed, 2),
                               "broker": round(broker_cpu / elapsed, 2),
                               "agents": round(agents_cpu / elapsed, 2)}}
    finally:
        for p in procs:
            stop_process(p)
        broker.stop()


def stored_predictions(url: str) -> dict[str, int]:
    """device -> prediction rows in the controllers' database (keyed by device, epoch and
    seq: a record delivered twice is stored once)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT device_id, count(*) "
                "FROM telemetry WHERE kind = 'prediction' GROUP BY device_id")).all()
    finally:
        engine.dispose()
    return {str(d): int(n) for d, n in rows}


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
    parser.add_argument("--postgresql-only", action="store_true",
                        help="skip the SQLite setup: one then two PostgreSQL replicas only")
    args = parser.parse_args()
    info = machine()
    workdir = Path(tempfile.mkdtemp(prefix="ew-bench-replicas-"))
    rows: list[dict[str, Any]] = []
    try:
        if not args.postgresql_only:
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
    by_setup = {r["setup"]: r["records_per_s"] for r in rows}
    ratio = by_setup["postgresql-2"] / by_setup["postgresql-1"]
    result = {"machine": info, "agents": args.agents, "records_per_agent": args.records,
              "results": rows, "two_replicas_over_one": round(ratio, 2),
              "load_average_1m_at_end": round(load_average(), 2)}
    write_result("replicas", result)
    header = ["setup", "records/s", "seconds", "controller CPU s (per replica)",
              "CPU s per 1,000 records", "batches per replica",
              "cores busy: controllers / broker / agents"]
    cells = [[r["setup"], f"{r['records_per_s']:,}", f"{r['seconds']:.2f}",
              " + ".join(f"{c:.2f}" for c in r["controller_cpu_s"]),
              f"{r['cpu_s_per_1000_records']:.3f}",
              " / ".join(str(b) for b in r["batches_per_replica"]),
              " / ".join(f"{r['cores_busy'][k]:.2f}" for k in ("controllers", "broker", "agents"))]
             for r in rows]
    print(table(header, cells))
    print(f"two PostgreSQL replicas / one: {ratio:.2f}x (goal {GOAL_RATIO}x)")
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

Two PostgreSQL replicas / one: **{ratio:.2f}x** (goal {GOAL_RATIO}x).
""")


if __name__ == "__main__":
    main()
