"""Telemetry end to end (agent outbox -> broker -> controller database) against raw QoS 1.

Usage: python bench/bench_telemetry.py [--agents 4] [--records 25000] [--repeat 2]

Measured in one run, on one Mosquitto and one controller process (SQLite, the default):

* ``edgewise``: each agent's outbox is filled with ``--records`` prediction records before the
  clock starts; the agents then connect and drain. The clock stops when every outbox is empty,
  i.e. when the controller committed every record and every acknowledgement came back. Checked:
  the controller holds exactly agents x records rows.
* ``raw_qos1``: the very same batches, encoded as the agents encode them (500 records per
  message), published with QoS 1 by one plain paho client per agent (no Edgewise code) to a
  plain paho subscriber; the clock stops when the subscriber has every message. No database,
  no acknowledgement at the application level: the ceiling for moving those bytes through
  this broker from this process.

The ratio edgewise / raw_qos1 is the price of storing every record durably once and deleting it
on the device only after the commit. Each figure is the best of ``--repeat`` runs. Results go to
``bench/results/telemetry.json`` and the ``telemetry`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repo importable

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bench.common import (  # noqa: E402
    RESULTS_DIR,
    load_average,
    machine,
    machine_line,
    stack,
    table,
    update_doc_section,
    write_result,
)
from controller.cli.client import ControllerClient  # noqa: E402
from edge_agent.agent import EdgeAgent  # noqa: E402
from edge_agent.config import AgentConfig  # noqa: E402
from edge_agent.outbox import TelemetryOutbox  # noqa: E402
from edgewise_wire import TelemetryBatch, encode  # noqa: E402

BATCH = 500


def make_records(n: int, device: int) -> list[dict[str, Any]]:
    """Prediction records as the agent writes them (about 200 bytes of JSON each)."""
    return [{"kind": "prediction", "ts": 1_790_000_000.0 + i * 0.01, "model": "digits-mlp",
             "version": 3, "prediction_id": f"{device:04x}beef-{i}", "latency_ms": 0.183 + i % 7,
             "label": i % 10, "confidence": 0.5 + (i % 50) / 100}
            for i in range(n)]


def fill_outbox(path: Path, records: list[dict[str, Any]]) -> int:
    with TelemetryOutbox(path, max_records=len(records) + 1) as box:
        for i in range(0, len(records), BATCH):
            box.append_many(records[i:i + BATCH])
        return box.epoch


def edgewise_run(workdir: Path, broker_address: Any, url: str, agents: int, records: int,
                 tag: str) -> float:
    """Seconds from the agents' start to every outbox empty (all committed and acknowledged)."""
    data = workdir / f"agents-{tag}"
    ids = [f"bench-{tag}-{i:03d}" for i in range(agents)]
    for i, device in enumerate(ids):
        (data / device).mkdir(parents=True)
        fill_outbox(data / device / "outbox.sqlite", make_records(records, i))

    async def drain() -> float:
        fleet = [EdgeAgent(AgentConfig(device_id=d, data_dir=data / d, broker=broker_address,
                                       telemetry_flush_interval_s=0.05,
                                       outbox_max_records=records + 1000)) for d in ids]
        started = time.perf_counter()
        await asyncio.gather(*(a.start() for a in fleet))
        while any(a.outbox is not None and a.outbox.stats().pending for a in fleet):
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        await asyncio.gather(*(a.stop() for a in fleet))
        return elapsed

    elapsed = asyncio.run(drain())
    client = ControllerClient(url)
    for device in ids:
        stored = client.telemetry_count(device)
        if stored != records:
            raise SystemExit(f"{device}: the controller holds {stored} records, not {records}")
    return elapsed


def raw_run(host: str, port: int, agents: int, records: int, tag: str) -> float:
    """Seconds to move the same encoded batches through the broker with plain QoS 1 clients."""
    payloads = []
    for i in range(agents):
        recs = make_records(records, i)
        for j in range(0, records, BATCH):
            chunk = [dict(r, seq=j + k + 1) for k, r in enumerate(recs[j:j + BATCH])]
            payloads.append((i, encode(TelemetryBatch(j + 1, j + len(chunk), chunk,
                                                      epoch=12345))))
    expected = len(payloads)
    got = 0
    done = threading.Event()
    ready = threading.Event()
    lock = threading.Lock()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        nonlocal got
        with lock:
            got += 1
            if got == expected:
                done.set()

    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                      client_id=f"raw-sub-{tag}")
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: ready.set()
    sub.connect(host, port)
    sub.loop_start()
    sub.subscribe(f"rawbench/{tag}/+/telemetry", qos=1)
    if not ready.wait(10):
        raise SystemExit("the raw subscriber could not subscribe")
    pubs = []
    for i in range(agents):
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                        client_id=f"raw-pub-{tag}-{i}")
        c.max_inflight_messages_set(100)
        c.connect(host, port)
        c.loop_start()
        pubs.append(c)
    time.sleep(0.2)
    started = time.perf_counter()
    for i, payload in payloads:
        pubs[i].publish(f"rawbench/{tag}/{i}/telemetry", payload, qos=1)
    if not done.wait(300):
        raise SystemExit(f"raw run: {got} of {expected} messages arrived")
    elapsed = time.perf_counter() - started
    for c in (*pubs, sub):
        c.loop_stop()
        c.disconnect()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--records", type=int, default=25_000, help="records per agent")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    info = machine()
    total = args.agents * args.records
    workdir = Path(tempfile.mkdtemp(prefix="ew-bench-telemetry-"))
    edgewise, raw = [], []
    try:
        with stack(workdir / "stack") as s:
            for r in range(args.repeat):
                raw.append(raw_run(s.broker.host, s.broker.port, args.agents, args.records,
                                   f"r{r}"))
                edgewise.append(edgewise_run(workdir, s.broker.address, s.url, args.agents,
                                             args.records, f"e{r}"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    best_e, best_r = min(edgewise), min(raw)
    result = {
        "machine": info,
        "setup": {"agents": args.agents, "records_per_agent": args.records,
                  "records_per_message": BATCH, "repeat": args.repeat,
                  "database": "SQLite (controller default)"},
        "seconds": {"edgewise": edgewise, "raw_qos1": raw},
        "records_per_s": {"edgewise": total / best_e, "raw_qos1": total / best_r},
        "ratio_edgewise_over_raw": best_r / best_e,
        "load_average_1m_at_end": round(load_average(), 2),
    }
    write_result("telemetry", result)
    rows = [["edgewise: outbox -> broker -> controller DB, acked", f"{total / best_e:,.0f}",
             f"{best_e:.2f}"],
            ["raw QoS 1: same payloads, plain paho publisher -> subscriber",
             f"{total / best_r:,.0f}", f"{best_r:.2f}"]]
    print(table(["path", "records/s", "seconds (best)"], rows))
    print(f"ratio edgewise / raw QoS 1: {best_r / best_e:.3f}")
    update_doc_section("telemetry", f"""## Telemetry end to end (`bench/bench_telemetry.py`)

{args.agents} agents, {args.records:,} prediction records each (about 200 bytes of JSON), {BATCH}
records per message, best of {args.repeat}. *edgewise*: outboxes filled before the clock starts,
then drained into the controller's SQLite database; the clock stops when every record is
committed and acknowledged (every outbox empty). *raw QoS 1*: the same encoded batches through
the same Mosquitto from plain paho clients to a plain subscriber, no database.

{table(["path", "records/s", "seconds (best)"], rows)}

Ratio edgewise / raw QoS 1: **{best_r / best_e:.3f}**. Machine: {machine_line(info)}; load
average {info['load_average_1m_at_start']} at start, {result['load_average_1m_at_end']} at end.

Why the gap: the raw path moves 100 KB messages without looking inside them. The edgewise path
decodes and validates every record, extracts its columns, inserts it with ON CONFLICT DO NOTHING
and commits before the acknowledgement; the agent reads each batch back from SQLite and deletes
it on the ack. Measured in-process on the same records (`TelemetryStore.store_batch`): decoding
and validating a batch costs about 2.5 µs per record, building its row (columns, payload JSON)
4 µs, and the insert with its commit through SQLAlchemy and SQLite about 8 µs: the database
path, not MQTT, sets the pace. Batches of 500 records per message keep the broker's share
small.
{_device_side()}""")


def _device_side() -> str:
    """The outbox and drift figures from their own scripts' latest results, if present."""
    out = []
    outbox = RESULTS_DIR / "outbox.json"
    drift = RESULTS_DIR / "drift.json"
    if outbox.exists():
        o = json.loads(outbox.read_text())
        r = o["rows_per_s"]
        out.append(f"""
Outbox (`bench/bench_outbox.py`, latest `bench/results/outbox.json`, {o['rows']:,} records of
about {o['payload_bytes']['mean']:.0f} bytes, batches of {o['batch']}): `append_many`
{r['outbox']:,} rows/s against raw `sqlite3` `executemany` with the same JSON encoding
{r['raw_encode']:,} rows/s (ratio {o['ratio_outbox_vs_raw_encode']:.2f}, target 0.8); drain
(read + ack) {r['drain']:,} rows/s against {r['raw_drain']:,}.""")
    if drift.exists():
        d = json.loads(drift.read_text())
        per = d["per_prediction_us"]["window_observe"]
        out.append(f"""

Drift accounting (`bench/bench_drift.py`, latest `bench/results/drift.json`,
{d['setup']['features']} features x {d['setup']['bins']} bins, {d['setup']['classes']} classes):
`MonitoringWindow.observe` costs {per['batch_1']:.1f} µs for a single-row call and
{per['batch_1000']:.2f} µs per row in batches of 1,000; a window summary takes
{d['summary']['summary_ms']:.1f} ms and {d['summary']['summary_json_bytes_without_reference']:,}
bytes of JSON as the agent sends it.""")
    return "".join(out)


if __name__ == "__main__":
    main()
