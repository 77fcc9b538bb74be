"""Agent predict overhead against raw onnxruntime, single row and batches of 1,000.

Usage: python bench/bench_predict.py [--quick]

The model reaches a real ``EdgeAgent`` the way it reaches a device (push to a controller,
deployment over a Mosquitto broker, verified download, smoke test), then, on the same machine and
in the same run:

* ``raw``: ``onnxruntime.InferenceSession.run`` on the same file, same session options (one
  intra-op thread), same float32 input, asking for the same outputs;
* ``agent``: ``EdgeAgent.predict()``: input validation, the run, the monitoring window (feature
  and prediction histograms, latency), a telemetry record per row;
* ``agent + outbox``: the same plus the agent's periodic write of those records to its SQLite
  outbox (``flush()``), amortised over the calls.

Each figure is the best of several repeats (the machine is shared). Models: the iris pipeline of
the demo (tiny: the overhead dominates) and a 1 MB MLP on digits (64 features). Results:
bench/results/predict.json and a section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import (  # noqa: E402
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

from controller.client import ControllerClient  # noqa: E402
from simulator.fleet import SimulatedFleet  # noqa: E402
from simulator.workload import load_dataset  # noqa: E402


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


def best_per_call(fn: Callable[[], Any], calls: int, repeats: int) -> float:
    """Best mean seconds per call over ``repeats`` runs of ``calls`` calls."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def measure(agent: Any, model_path: Path, model: SizedModel, rows: np.ndarray,
            calls: int, repeats: int) -> dict[str, Any]:
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
    row = one[0]
    out: dict[str, Any] = {}
    for label, x, agent_x, n_calls in (("single_row", one, row, calls),
                                       ("batch_1000", batch, batch, max(5, calls // 200))):
        per_row = x.shape[0]
        for _ in range(50):  # warm up both paths
            session.run(outputs, {name: x})
            agent.predict(agent_x)
        agent.flush()
        raw = best_per_call(lambda x=x: session.run(outputs, {name: x}), n_calls, repeats)
        pred = best_per_call(lambda agent_x=agent_x: agent.predict(agent_x), n_calls, repeats)
        agent.flush()

        def predict_and_flush(agent_x: Any = agent_x, n: int = n_calls) -> None:
            for _ in range(n):
                agent.predict(agent_x)
            agent.flush()

        with_outbox = best_per_call(predict_and_flush, 1, repeats) / n_calls
        out[label] = {
            "rows_per_call": per_row,
            "raw_us": round(raw * 1e6, 1),
            "agent_us": round(pred * 1e6, 1),
            "agent_with_outbox_us": round(with_outbox * 1e6, 1),
            "ratio_agent_vs_raw": round(pred / raw, 2),
            "ratio_agent_with_outbox_vs_raw": round(with_outbox / raw, 2),
            "overhead_us_per_row": round((pred - raw) * 1e6 / per_row, 2),
        }
    return out


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    models = [await asyncio.to_thread(iris_model),
              await asyncio.to_thread(sized_model, 1.0)]
    datasets = {"iris-lr": load_dataset("iris").features,
                models[1].manifest.model: load_dataset("digits").features}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ew-bench-predict-") as tmp, \
            stack(Path(tmp) / "stack") as st:
        client = ControllerClient(st.url)
        # a bound the benchmark cannot reach: overflow deletes would be timed otherwise (the
        # timed loops make records faster than the loop, which they block, can send them)
        fleet = SimulatedFleet(st.broker.address, 1, Path(tmp) / "devices", prefix="predict",
                               outbox_max_records=10_000_000)
        await fleet.start()
        try:
            agent = fleet.agents[0]
            for _ in range(100):
                if await asyncio.to_thread(client.list_devices):
                    break
                await asyncio.sleep(0.1)
            for model in models:
                stored = await asyncio.to_thread(client.push_version, model.manifest,
                                                 model.artifact)
                await asyncio.to_thread(client.deploy, model.manifest.model, stored["version"])
                if not await fleet.wait_for_version(model.manifest.model, stored["version"], 60):
                    raise RuntimeError(f"the agent did not activate {model.manifest.model}")
                path = next((agent.config.data_dir / "models").glob(
                    f"{model.manifest.artifact.sha256}.*"))
                rows = datasets[model.manifest.model]
                results[model.manifest.model] = {
                    "description": model.description, "bytes": model.size,
                    **measure(agent, path, model, rows, args.calls, args.repeats)}
                print(f"{model.manifest.model}: " + ", ".join(
                    f"{k}: raw {v['raw_us']} us, agent {v['agent_us']} us "
                    f"({v['ratio_agent_vs_raw']}x), with outbox {v['agent_with_outbox_us']} us"
                    for k, v in results[model.manifest.model].items() if isinstance(v, dict)),
                    flush=True)
        finally:
            await fleet.stop(drain_timeout=5)
            client.close()
    return results


def _markdown(data: dict[str, Any]) -> str:
    rows = []
    for name, r in data["models"].items():
        for case in ("single_row", "batch_1000"):
            c = r[case]
            rows.append([f"{name} ({r['bytes'] / 1024:.0f} KiB)", case.replace("_", " "),
                         fmt(c["raw_us"], 1), fmt(c["agent_us"], 1),
                         fmt(c["agent_with_outbox_us"], 1), f"{c['ratio_agent_vs_raw']}x",
                         f"{c['ratio_agent_with_outbox_vs_raw']}x",
                         fmt(c["overhead_us_per_row"], 2)])
    return f"""## Agent predict overhead (`bench/bench_predict.py`)

Measured {data['measured_at']} on {machine_line(data['machine'])}; load average
{data['machine']['load_average_1m_at_start']} before, {data['load_average_after']} after.
Best of {data['repeats']} repeats. Raw: `InferenceSession.run` on the same file with the same
options (one intra-op thread) and outputs. Agent: `EdgeAgent.predict()` (validation, run,
monitoring window, one telemetry record per row). With outbox: plus the agent's periodic
SQLite write of those records, amortised.

{table(["model", "call", "raw (us/call)", "agent (us/call)", "agent + outbox (us/call)",
        "agent / raw", "agent + outbox / raw", "overhead (us/row)"], rows)}
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Example: python bench/bench_predict.py --quick")
    ap.add_argument("--calls", type=int, default=5000, help="single-row calls per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer calls and repeats")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.calls, args.repeats = 2000, 3
    logging.basicConfig(level=logging.WARNING)
    info = machine()
    data = {"machine": info, "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "repeats": args.repeats, "models": asyncio.run(_run(args)),
            "load_average_after": round(load_average(), 2)}
    path = write_result("predict", data)
    if not args.no_doc:
        update_doc_section("predict", _markdown(data))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
