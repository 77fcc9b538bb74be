"""The agent's cost per prediction with every prediction recorded: one record per prediction
against columnar records (``telemetry_columnar``), each against raw onnxruntime in the same run.

Usage: python bench/bench_agent_records.py [--seconds 3] [--repeats 3]

One process, no broker (the link never connects; nothing is sent): an ``EdgeAgent`` with the
iris pipeline installed (as after an update) calls ``predict()`` back to back, and every
``FLUSH_EVERY_S`` of calls writes what it recorded to its SQLite outbox (``flush()``, what the
telemetry loop does every 0.2 s) inside the timed window. Variants:

* ``raw``: ``InferenceSession.run`` on the same file and input (one intra-op thread);
* ``per-record``: the default agent: one ``prediction`` record and one outbox row per prediction;
* ``columnar``: one ``predictions`` record (arrays, with the input rows) per flush and version.

Overhead = agent - raw, per call (single row) and per row (batches of 1,000). Targets: <= 10 µs
per single-row call, <= 1 µs per row in batches of 1,000. Results: ``bench/results/
agent_records.json`` and the ``agent_records`` section of ``docs/benchmarks.md``. Sending (the
uplink) is not timed here; ``bench/bench_predict.py`` times the whole service with a broker.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repo importable

import numpy as np  # noqa: E402

from bench.bench_predict import iris_model  # noqa: E402
from bench.common import (  # noqa: E402
    load_average,
    machine,
    machine_line,
    table,
    update_doc_section,
    write_result,
)
from edge_agent.agent import EdgeAgent  # noqa: E402
from edge_agent.config import AgentConfig  # noqa: E402
from edgewise_mqtt.link import BrokerAddress  # noqa: E402
from simulator.broker import free_port  # noqa: E402

FLUSH_EVERY_S = 0.2


def install(data_dir: Path, manifest: Any, artifact: bytes) -> Path:
    manifest = dataclasses.replace(manifest, version=1)
    models = data_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    name = f"{manifest.artifact.sha256}.onnx"
    (models / name).write_bytes(artifact)
    (data_dir / "active.json").write_text(json.dumps(
        {"manifest": manifest.to_dict(), "file": name, "deployment_id": "bench"}))
    return models / name


def per_call(fn: Any, seconds: float, flush: Any = None) -> float:
    calls = 0
    t0 = time.perf_counter()
    next_flush = t0 + FLUSH_EVERY_S
    while True:
        fn()
        calls += 1
        now = time.perf_counter()
        if flush is not None and now >= next_flush:
            flush()
            next_flush = time.perf_counter() + FLUSH_EVERY_S
        if now - t0 >= seconds:
            break
    if flush is not None:
        flush()
    return (time.perf_counter() - t0) / calls


async def run(seconds: float, repeats: int) -> dict[str, Any]:
    import onnxruntime as ort

    sized = iris_model()
    work = Path(tempfile.mkdtemp(prefix="ew-bench-records-"))
    broker = BrokerAddress("127.0.0.1", free_port())  # nothing listens: never connects
    agents = {}
    path = None
    for variant, columnar in (("per-record", False), ("columnar", True)):
        data = work / variant
        path = install(data, sized.manifest, sized.artifact)
        agent = EdgeAgent(AgentConfig(device_id=f"bench-{variant}", data_dir=data, broker=broker,
                                      telemetry_columnar=columnar,
                                      outbox_max_records=10_000_000, health_sample_s=0))
        await agent.start(wait_connected=False)
        if agent.runtime is None:
            raise SystemExit(f"{variant}: the installed model did not load")
        agents[variant] = agent
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed_name = session.get_inputs()[0].name
    outputs = [o.name for o in session.get_outputs()]
    rng = np.random.default_rng(0)
    figures: dict[str, dict[str, float]] = {}
    for rows in (1, 1000):
        x = rng.normal(5, 1, size=(rows, 4)).astype(np.float32)
        best: dict[str, float] = {}
        for _ in range(repeats):
            t = per_call(lambda x=x: session.run(outputs, {feed_name: x}), seconds)
            best["raw"] = min(best.get("raw", t), t)
            for variant, agent in agents.items():
                t = per_call(lambda a=agent, x=x: a.predict(x), seconds, agent.flush)
                best[variant] = min(best.get(variant, t), t)
        figures[f"batch_{rows}"] = {k: v * 1e6 for k, v in best.items()}
    rows_written = {v: a.outbox.stats().last_seq for v, a in agents.items()}
    for agent in agents.values():
        await agent.stop()
    return {"us_per_call": figures, "outbox_rows_written": rows_written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    info = machine()
    data = asyncio.run(run(args.seconds, args.repeats))
    f = data["us_per_call"]
    over = {b: {v: f[b][v] - f[b]["raw"] for v in ("per-record", "columnar")} for b in f}
    result = {"machine": info, "setup": {"seconds": args.seconds, "repeats": args.repeats,
                                         "flush_every_s": FLUSH_EVERY_S, "model": "iris LR"},
              **data, "overhead_us": over,
              "overhead_us_per_row_batch_1000": {v: over["batch_1000"][v] / 1000
                                                 for v in over["batch_1000"]},
              "load_average_1m_at_end": round(load_average(), 2)}
    write_result("agent_records", result)
    rows = [[v, f"{f['batch_1']['raw']:.1f}", f"{f['batch_1'][v]:.1f}",
             f"**{over['batch_1'][v]:.1f}**", f"{f['batch_1000'][v]:.0f}",
             f"**{over['batch_1000'][v] / 1000:.2f}**"] for v in ("per-record", "columnar")]
    header = ["agent", "raw µs (1 row)", "agent µs (1 row)", "overhead µs / call (goal 10)",
              "agent µs (1,000 rows)", "overhead µs / row (goal 1)"]
    print(table(header, rows))
    update_doc_section("agent_records", f"""## Agent: recording every prediction, per record or columnar (`bench/bench_agent_records.py`)

The iris pipeline on an `EdgeAgent` (no broker: nothing sent), every prediction recorded, its
records written to the SQLite outbox every {FLUSH_EVERY_S} s inside the timed window; raw
onnxruntime on the same file in the same run (raw 1,000 rows: {f['batch_1000']['raw']:.0f} µs).
*per-record*: one `prediction` record and outbox row per prediction (the default);
*columnar*: one `predictions` record per flush and version, with the input rows
(`telemetry_columnar`). Best of {args.repeats} runs of {args.seconds:g} s.

{table(header, rows)}

Outbox rows written: {data['outbox_rows_written']['per-record']:,} per-record against
{data['outbox_rows_written']['columnar']:,} columnar. Machine: {machine_line(info)}; load average
{info['load_average_1m_at_start']} at start, {result['load_average_1m_at_end']} at end.
""")


if __name__ == "__main__":
    main()
