"""Resident memory of one `edgewise-agent` process, against a bare onnxruntime process.

Usage: python bench/bench_agent_memory.py [--quick]

A real agent daemon (``edgewise-agent --config agent.toml``, its own process, local HTTP API on)
connects to a Mosquitto and a controller started here, receives a model by a deployment, then
serves predictions sent to its local HTTP API with true labels fed back (telemetry and the
monitoring window running) for ``--seconds``. Its RSS is sampled every 0.25 s: at start
(connected, no model), with the model active, and while serving (median and peak).

Baseline, same run: a bare Python process that imports numpy and onnxruntime, opens an
``InferenceSession`` on the same model file and runs it on one row (what any ONNX service on
the device holds at the least). Results: bench/results/agent_memory.json and a section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    REPO_ROOT,
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
from simulator.broker import free_port  # noqa: E402
from simulator.fleet import sample_process  # noqa: E402
from simulator.workload import load_dataset  # noqa: E402

_BASELINE = """
import sys, numpy as np, onnxruntime as ort
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
s.run(None, {s.get_inputs()[0].name: np.zeros((1, int(sys.argv[2])), np.float32)})
print("ready", flush=True)
sys.stdin.readline()
"""


def baseline_rss(model_path: Path, n_features: int) -> float:
    proc = subprocess.Popen([sys.executable, "-c", _BASELINE, str(model_path), str(n_features)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the baseline process failed")
        time.sleep(0.5)
        return sample_process(proc.pid).rss_mib
    finally:
        proc.kill()
        proc.wait()


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    model = await asyncio.to_thread(sized_model, args.model_mb)
    features = load_dataset("digits")
    with tempfile.TemporaryDirectory(prefix="ew-bench-mem-") as tmp_name, \
            stack(Path(tmp_name) / "stack") as st:
        tmp = Path(tmp_name)
        http_port = free_port()
        config = tmp / "agent.toml"
        config.write_text(f"""device_id = "mem-bench-01"
data_dir = "{tmp / 'agent'}"
http_port = {http_port}
metrics_window_s = 10.0
[broker]
host = "{st.broker.host}"
port = {st.broker.port}
""")
        with (tmp / "agent.log").open("wb") as agent_log:
            agent = subprocess.Popen([sys.executable, "-m", "edge_agent.daemon", "--config",
                                      str(config)], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                     stderr=agent_log)
        client = ControllerClient(st.url)
        samples: list[tuple[str, float]] = []
        try:
            for _ in range(150):
                if await asyncio.to_thread(client.list_devices):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)
            start_rss = sample_process(agent.pid).rss_mib
            stored = await asyncio.to_thread(client.push_version, model.manifest, model.artifact)
            await asyncio.to_thread(client.deploy, model.manifest.model, stored["version"])
            http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=10)
            for _ in range(300):
                try:
                    r = await http.post("/v1/predict", json={"features": [0.0] * 64})
                    if r.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
            else:
                raise RuntimeError(f"the agent never served the model; see {tmp}/agent.log")
            await asyncio.sleep(0.5)
            model_rss = sample_process(agent.pid).rss_mib
            t_end = time.monotonic() + args.seconds
            next_sample = 0.0
            sent = 0
            interval = 1.0 / args.rate
            while time.monotonic() < t_end:
                row = int(sent % len(features.target))
                r = await http.post("/v1/predict",
                                    json={"features": features.features[row].tolist()})
                body = r.json()
                pid = body["predictions"][0]["prediction_id"] if "predictions" in body else \
                    body.get("prediction_id")
                if pid:
                    await http.post("/v1/feedback", json={
                        "prediction_id": pid, "label": int(features.target[row])})
                sent += 1
                if time.monotonic() >= next_sample:
                    samples.append(("serving", sample_process(agent.pid).rss_mib))
                    next_sample = time.monotonic() + 0.25
                await asyncio.sleep(interval)
            await http.aclose()
            records = await asyncio.to_thread(client.telemetry_count)
        finally:
            agent.terminate()
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
            client.close()
        path = next((tmp / "agent" / "models").glob(f"{model.manifest.artifact.sha256}.*"))
        base = baseline_rss(path, 64)
    serving = [v for _, v in samples]
    steady = statistics.median(serving[len(serving) // 2:]) if serving else float("nan")
    return {
        "model": model.manifest.model, "model_bytes": model.size,
        "model_description": model.description,
        "requests": sent, "rate_per_s": args.rate, "seconds": args.seconds,
        "records_stored": records,
        "agent_rss_mib_start": round(start_rss, 1),
        "agent_rss_mib_model_loaded": round(model_rss, 1),
        "agent_rss_mib_serving_median": round(steady, 1),
        "agent_rss_mib_serving_peak": round(max(serving), 1) if serving else None,
        "baseline_onnxruntime_rss_mib": round(base, 1),
        "ratio_agent_serving_vs_baseline": round(steady / base, 2),
        "agent_extra_mib_over_baseline": round(steady - base, 1),
    }


def _markdown(data: dict[str, Any]) -> str:
    r = data["result"]
    rows = [
        ["agent connected, no model yet", fmt(r["agent_rss_mib_start"], 1)],
        [f"agent with the model active ({r['model_bytes'] / 1024 / 1024:.1f} MiB)",
         fmt(r["agent_rss_mib_model_loaded"], 1)],
        [f"agent serving {r['rate_per_s']:g} predictions/s + labels, telemetry and monitoring "
         f"(median / peak over {r['seconds']:g} s)",
         f"{fmt(r['agent_rss_mib_serving_median'], 1)} / {fmt(r['agent_rss_mib_serving_peak'], 1)}"],
        ["baseline: bare Python + numpy + onnxruntime session of the same model",
         fmt(r["baseline_onnxruntime_rss_mib"], 1)],
        ["ratio agent serving / baseline", f"{r['ratio_agent_serving_vs_baseline']}x "
                                           f"(+{r['agent_extra_mib_over_baseline']} MiB)"],
    ]
    return f"""## Agent resident memory (`bench/bench_agent_memory.py`)

Measured {data['measured_at']} on {machine_line(data['machine'])}; load average
{data['machine']['load_average_1m_at_start']} before, {data['load_average_after']} after.
One `edgewise-agent` process (local HTTP API on) with {r['model_description']}; requests to its
local HTTP API; {r['records_stored']} telemetry records reached the controller.

{table(["what", "RSS (MiB)"], rows)}
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Example: python bench/bench_agent_memory.py --quick")
    ap.add_argument("--model-mb", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=50.0, help="requests per second")
    ap.add_argument("--quick", action="store_true", help="15 s of serving")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds = 15.0
    logging.basicConfig(level=logging.WARNING)
    info = machine()
    result = asyncio.run(_run(args))
    print(f"agent RSS: start {result['agent_rss_mib_start']} MiB, model loaded "
          f"{result['agent_rss_mib_model_loaded']} MiB, serving "
          f"{result['agent_rss_mib_serving_median']} MiB (peak "
          f"{result['agent_rss_mib_serving_peak']}); baseline onnxruntime process "
          f"{result['baseline_onnxruntime_rss_mib']} MiB -> "
          f"{result['ratio_agent_serving_vs_baseline']}x", flush=True)
    data = {"machine": info, "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "result": result, "load_average_after": round(load_average(), 2)}
    path = write_result("agent_memory", data)
    if not args.no_doc:
        update_doc_section("agent_memory", _markdown(data))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
