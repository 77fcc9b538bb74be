"""Agent predict with telemetry capture against raw onnxruntime, single row and batches of 1,000.

Usage: python bench/bench_predict.py [--quick]

Targets (issue 4): agent / raw within 1.3x for a single row, 1.1x for a batch of 1,000.

Each model reaches real ``EdgeAgent``s the way it reaches a device (push to a controller process,
deployment over a Mosquitto broker, verified download, smoke test), then, on the same machine and
in the same run, each variant calls back to back on the agents' event loop for ``--seconds``:

* ``raw``: ``onnxruntime.InferenceSession.run`` on the same file, same session options (one
  intra-op thread), same float32 input, asking for the same outputs;
* ``agent predict``: ``EdgeAgent.predict()`` with the loop blocked: input validation, the run,
  the monitoring window, a telemetry record per row appended in memory; nothing written;
* ``agent + telemetry`` (the figure held to the target): ``EdgeAgent.predict()`` with the loop
  running as in a service, so the agent's own telemetry loop writes the records to its SQLite
  outbox every 0.2 s and sends them to the controller, whose acks delete them; the records
  still in memory at the end are flushed inside the timed window;
* ``agent + telemetry, 1 % recorded``: the same on an agent with ``prediction_sample_rate =
  0.01`` (raw records for 1 % of rows; the monitoring window still counts every prediction).

The timed loops (raw included) yield to the event loop every millisecond; before each one the
outboxes are drained, so no variant pays for another's telemetry. Each figure is the best of
``--repeats``. Models: the iris pipeline of the demo (tiny: the overhead dominates), a 1 MB
scikit-learn MLP on digits and a 10 MiB ONNX MLP (bench/onnx_mlp.py; heavier inference per row).
Results: bench/results/predict.json and a section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from bench.common import (  # noqa: E402
    SizedModel,
    fmt,
    load_average,
    machine,
    machine_line,
    sized_model,
    stack,
    table,
    update_doc_section,
    write_result,
)
from bench.onnx_mlp import onnx_mlp_model  # noqa: E402
from controller.client import ControllerClient  # noqa: E402
from simulator.fleet import DeviceGroup, SimulatedFleet  # noqa: E402
from simulator.workload import load_dataset  # noqa: E402

TARGETS = {"single_row": 1.3, "batch_1000": 1.1}
YIELD_EVERY_S = 0.001
SAMPLED_RATE = 0.01


def iris_model() -> SizedModel:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from converters import convert_sklearn

    data = load_dataset("iris")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(data.features, data.target)
    result = convert_sklearn(model, data.features, name="iris-lr", labels=data.target,
                             feature_names=data.feature_names)
    return SizedModel(result.manifest, result.artifact,
                      "scikit-learn StandardScaler + LogisticRegression on iris")


async def per_call(fn: Callable[[], Any], seconds: float, *, yield_to_loop: bool,
                   finish: Callable[[], Any] | None = None) -> float:
    """Mean seconds per call of ``fn`` called back to back for about ``seconds``; with
    ``yield_to_loop`` the event loop runs every millisecond (the agents' telemetry loops, MQTT);
    ``finish`` runs once at the end, inside the timed window."""
    calls = 0
    t0 = time.perf_counter()
    next_yield = t0 + YIELD_EVERY_S
    while True:
        fn()
        calls += 1
        now = time.perf_counter()
        if now - t0 >= seconds:
            break
        if yield_to_loop and now >= next_yield:
            await asyncio.sleep(0)
            next_yield = time.perf_counter() + YIELD_EVERY_S
    if finish is not None:
        finish()
    return (time.perf_counter() - t0) / calls


def _time_flush(agent: Any) -> float:
    """Seconds per record of one flush of what ``agent`` holds in memory (its outbox drained
    before, so every pending row after the flush came from it)."""
    t0 = time.perf_counter()
    agent.flush()
    seconds = time.perf_counter() - t0
    written = agent.outbox.stats().pending
    return seconds / written if written else float("inf")


async def _drain(fleet: SimulatedFleet) -> None:
    if not await fleet.wait_drained(120):
        raise RuntimeError("the agents' telemetry did not drain in 120 s")


async def measure(full: Any, sampled: Any, fleet: SimulatedFleet, model_path: Path,
                  model: SizedModel, rows: np.ndarray, seconds: float,
                  repeats: int) -> dict[str, Any]:
    import onnxruntime as ort

    manifest = model.manifest
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    outputs = [manifest.label_output] + ([manifest.score_output] if manifest.score_output else [])
    name = manifest.inputs[0].name
    one = np.ascontiguousarray(rows[:1], dtype=np.float32)
    batch = np.ascontiguousarray(np.resize(rows, (1000, rows.shape[1])), dtype=np.float32)
    out: dict[str, Any] = {}
    for label, x, agent_x in (("single_row", one, one[0]), ("batch_1000", batch, batch)):
        for _ in range(20):  # warm up every path
            session.run(outputs, {name: x})
            full.predict(agent_x)
            sampled.predict(agent_x)
        # the agent's own timing of the model run inside predict() (Prediction.latency_ms, per
        # row), to tell the run's cost in the agent from the agent's work around it
        run_ms: list[float] = []

        def predict_timed(a: Any = agent_x, ms: list[float] = run_ms) -> None:
            ms.append(full.predict(a)[0].latency_ms)

        variants: dict[str, tuple[Callable[[], Any], bool, Callable[[], Any] | None]] = {
            "raw": (partial(session.run, outputs, {name: x}), True, None),
            "agent_predict": (predict_timed, False, None),
            "agent_telemetry": (partial(full.predict, agent_x), True, full.flush),
            "agent_telemetry_sampled": (partial(sampled.predict, agent_x), True, sampled.flush),
        }
        best = dict.fromkeys(variants, float("inf"))
        flush_per_record = run_in_agent = float("inf")
        for _ in range(repeats):
            for key, (fn, yield_to_loop, finish) in variants.items():
                await _drain(fleet)
                value = await per_call(fn, seconds, yield_to_loop=yield_to_loop, finish=finish)
                best[key] = min(best[key], value)
                if key == "agent_predict":  # what the loop would have written: time it here
                    flush_per_record = min(flush_per_record, _time_flush(full))
                    run_in_agent = min(run_in_agent, statistics.mean(run_ms) / 1000 * len(x))
                    run_ms.clear()
        # where the overhead goes: the monitoring window's share of a call, timed alone
        run_out = full.runtime.run(x)
        monitor = await per_call(
            partial(full.monitor.observe, x, run_out.labels, run_out.scores, 1.0),
            min(seconds, 0.5), yield_to_loop=False)
        await _drain(fleet)
        raw, n = best["raw"], x.shape[0]
        ratio = best["agent_telemetry"] / raw
        out[label] = {
            "rows_per_call": n,
            "raw_us": round(raw * 1e6, 1),
            "agent_predict_us": round(best["agent_predict"] * 1e6, 1),
            "agent_telemetry_us": round(best["agent_telemetry"] * 1e6, 1),
            "agent_telemetry_sampled_us": round(best["agent_telemetry_sampled"] * 1e6, 1),
            "ratio_agent_predict_vs_raw": round(best["agent_predict"] / raw, 2),
            "ratio_agent_telemetry_vs_raw": round(ratio, 2),
            "ratio_agent_telemetry_sampled_vs_raw": round(
                best["agent_telemetry_sampled"] / raw, 2),
            "target": TARGETS[label],
            "target_met": ratio <= TARGETS[label],
            "overhead_us_per_row": round((best["agent_telemetry"] - raw) * 1e6 / n, 2),
            "predict_overhead_us_per_row": round((best["agent_predict"] - raw) * 1e6 / n, 2),
            # the parts: monitoring window (histograms, latency) per row; the rest of predict()
            # (validation, ids, the feedback memory, one record dict per row); the outbox write
            # of one record (JSON encoding + SQLite insert, in the agent's loop)
            "monitor_us_per_row": round(monitor * 1e6 / n, 2),
            "run_in_agent_us": round(run_in_agent * 1e6, 1),
            "bookkeeping_us_per_row": round(
                (best["agent_predict"] - run_in_agent - monitor) * 1e6 / n, 2),
            "outbox_write_us_per_record": round(flush_per_record * 1e6, 2),
        }
    return out


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    models = [await asyncio.to_thread(iris_model),
              await asyncio.to_thread(sized_model, 1.0),
              await asyncio.to_thread(onnx_mlp_model, 10.0)]
    digits = load_dataset("digits").features
    datasets = {"iris-lr": load_dataset("iris").features}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ew-bench-predict-") as tmp, \
            stack(Path(tmp) / "stack") as st:
        client = ControllerClient(st.url)
        # a bound the benchmark cannot reach: overflow deletes would be timed otherwise (the
        # batch loops make records faster than the controller stores them)
        fleet = SimulatedFleet.from_groups(
            st.broker.address,
            [DeviceGroup("full", 1), DeviceGroup("sampled", 1, config={
                "prediction_sample_rate": SAMPLED_RATE})],
            Path(tmp) / "devices", prefix="predict", outbox_max_records=10_000_000)
        await fleet.start()
        try:
            full, sampled = fleet.agents
            for _ in range(100):
                if len(await asyncio.to_thread(client.list_devices)) >= 2:
                    break
                await asyncio.sleep(0.1)
            for model in models:
                stored = await asyncio.to_thread(client.push_version, model.manifest,
                                                 model.artifact)
                await asyncio.to_thread(client.deploy, model.manifest.model, stored["version"])
                if not await fleet.wait_for_version(model.manifest.model, stored["version"], 60):
                    raise RuntimeError(f"the agents did not activate {model.manifest.model}")
                path = next((full.config.data_dir / "models").glob(
                    f"{model.manifest.artifact.sha256}.*"))
                rows = datasets.get(model.manifest.model, digits)
                results[model.manifest.model] = {
                    "description": model.description, "bytes": model.size,
                    **await measure(full, sampled, fleet, path, model, rows, args.seconds,
                                    args.repeats)}
                for case, v in results[model.manifest.model].items():
                    if isinstance(v, dict):
                        print(f"{model.manifest.model} {case}: raw {v['raw_us']} us, agent "
                              f"predict {v['agent_predict_us']} us, agent + telemetry "
                              f"{v['agent_telemetry_us']} us -> {v['ratio_agent_telemetry_vs_raw']}x"
                              f" (target {v['target']}x: "
                              f"{'met' if v['target_met'] else 'MISSED'}); 1% recorded "
                              f"{v['agent_telemetry_sampled_us']} us -> "
                              f"{v['ratio_agent_telemetry_sampled_vs_raw']}x", flush=True)
        finally:
            await fleet.stop(drain_timeout=5)
            client.close()
    return results


def _markdown(data: dict[str, Any]) -> str:
    rows, parts = [], []
    for name, r in data["models"].items():
        for case in ("single_row", "batch_1000"):
            c = r[case]
            rows.append([f"{name} ({r['bytes'] / 1024:.0f} KiB)", case.replace("_", " "),
                         fmt(c["raw_us"], 1), fmt(c["agent_predict_us"], 1),
                         fmt(c["agent_telemetry_us"], 1),
                         f"**{c['ratio_agent_telemetry_vs_raw']}x**",
                         f"{c['target']}x {'met' if c['target_met'] else '**missed**'}",
                         fmt(c["overhead_us_per_row"], 2),
                         f"{fmt(c['agent_telemetry_sampled_us'], 1)} "
                         f"({c['ratio_agent_telemetry_sampled_vs_raw']}x)"])
            n = c["rows_per_call"]
            parts.append([name, case.replace("_", " "), fmt(c["raw_us"] / n, 2),
                          fmt(c["run_in_agent_us"] / n, 2), fmt(c["monitor_us_per_row"], 2), fmt(c["bookkeeping_us_per_row"], 2),
                          fmt(c["outbox_write_us_per_record"], 2),
                          fmt((c["agent_telemetry_us"] - c["agent_predict_us"]) / n, 2)])
    return f"""## Agent predict overhead (`bench/bench_predict.py`)

Measured {data['measured_at']} on {machine_line(data['machine'])}; load average
{data['machine']['load_average_1m_at_start']} before, {data['load_average_after']} after.
Targets: agent with telemetry / raw within 1.3x for a single row, 1.1x for a batch of 1,000.
Best of {data['repeats']} runs of {data['seconds']:g} s per figure. *Raw*:
`InferenceSession.run` on the same file with the same options (one intra-op thread) and
outputs. *Agent predict*: `EdgeAgent.predict()` with the event loop blocked (validation, run,
monitoring window, one telemetry record per row appended in memory). *Agent + telemetry*: the
same with the event loop running, so the agent's own loop writes the records to its SQLite
outbox every 0.2 s and sends them to the controller (acks delete them); the rest is flushed
inside the timed window. *1 % recorded*: an agent with `prediction_sample_rate = 0.01` (the
monitoring window still counts every prediction). Every timed loop, raw included, yields to the
event loop every millisecond; outboxes are drained before each.

{table(["model", "call", "raw (us/call)", "agent predict (us/call)",
        "agent + telemetry (us/call)", "agent + telemetry / raw", "target",
        "overhead (us/row)", "1 % recorded (us/call)"], rows)}

Where the overhead goes, in microseconds per row: the model run as the agent itself timed it
inside `predict()` (the latency it reports), beside the raw run; the monitoring window's
`observe` timed alone; the rest of `predict()` (agent predict - its run - monitoring:
validation, prediction ids, the feedback memory, a record dict and a `Prediction` per row); one
flush of the records a blocked run left in memory, per record (JSON encoding and the SQLite
insert in one transaction); and the whole telemetry loop as the agent + telemetry run paid for
it (agent + telemetry - agent predict: the outbox write, reading batches back, sending them,
deleting on ack).

{table(["model", "call", "raw run", "the run inside predict()", "monitoring window",
        "rest of predict()",
        "outbox write (per record)", "telemetry loop, as paid"], parts)}

{_remarks(data["models"])}
"""


def _remarks(models: dict[str, Any]) -> str:
    met = [f"{name} {case.replace('_', ' ')}" for name, r in models.items()
           for case in ("single_row", "batch_1000") if r[case]["target_met"]]
    tiny = next(iter(models.values()))  # the smallest model: its overhead is nearly all agent
    one, many = tiny["single_row"], tiny["batch_1000"]
    single_over = one["agent_telemetry_us"] - one["raw_us"]
    row_over = many["overhead_us_per_row"]
    return (
        f"Targets met: {', '.join(met) if met else 'none'}. The agent's cost per call is "
        f"roughly fixed, not a share of the model's: about {single_over:.0f} us per single-row "
        f"call and {row_over:.0f} us per row in batches with every row recorded (from "
        f"{next(iter(models))}, whose own run is negligible). Against it, 1.3x for a single row "
        f"holds only for models whose run takes at least ~{single_over / 0.3:.0f} us, and 1.1x "
        f"for a batch of 1,000 only from ~{row_over / 0.1:.0f} us per row; the two small models "
        f"here need far less. For a single row the monitoring window (feature and "
        f"prediction histograms, latency) and the bookkeeping of `predict()` (ids, the feedback "
        f"memory, a record and a result object per row) are most of it; in batches, one "
        f"telemetry record per row dominates: its JSON encoding and SQLite insert "
        f"(about {many['outbox_write_us_per_record']:.0f} us per record) and reading it back "
        f"to send it. Recording 1 % of rows (`prediction_sample_rate`) removes most of the "
        f"telemetry share and leaves the per-row bookkeeping. Figures on this shared two-core "
        f"machine vary by tens of percent between runs (see the load average); the larger "
        f"model's ratios are the noisiest.")



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Example: python bench/bench_predict.py --quick")
    ap.add_argument("--seconds", type=float, default=1.0, help="length of each timed loop")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="0.3 s loops, 3 repeats")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats = 0.3, 3
    logging.basicConfig(level=logging.WARNING)
    info = machine()
    data = {"machine": info, "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "repeats": args.repeats, "seconds": args.seconds, "targets": TARGETS,
            "models": asyncio.run(_run(args)), "load_average_after": round(load_average(), 2)}
    path = write_result("predict", data)
    if not args.no_doc:
        update_doc_section("predict", _markdown(data))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
