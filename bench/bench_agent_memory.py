"""Resident memory of one `edgewise-agent` process, against a bare onnxruntime process.

Usage: python bench/bench_agent_memory.py [--quick]

A real agent daemon (``edgewise-agent --config agent.toml``, its own process, local HTTP API on)
connects to a Mosquitto and a controller started here, receives a model by a deployment, then
takes ``--fill`` predictions in batches of 100 through its local HTTP API (one in ten labelled),
so that its bounded structures (the feedback memory of the last 20,000 predictions, the
monitoring window, SQLite's page cache) are as full as on a device that has run for hours, then
serves single predictions with true labels fed back (telemetry and the monitoring window
running) for ``--seconds``. Its RSS (VmRSS from /proc) is sampled every 0.25 s: at start
(connected, no model), with the model active, after the fill, and while serving (median and
peak). Target (issue 4): under 80 MiB while serving.

Baseline, same run: a bare Python process that imports numpy and onnxruntime, opens an
``InferenceSession`` on the same model file and runs it on one row (what any ONNX service on
the device holds at the least). Results: bench/results/agent_memory.json and a section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

TARGET_MIB = 80.0

_BASELINE = """
import sys, numpy as np, onnxruntime as ort
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
s.run(None, {s.get_inputs()[0].name: np.zeros((1, int(sys.argv[2])), np.float32)})
print("ready", flush=True)
sys.stdin.readline()
"""


# What the agent's process is made of: RSS after each import, in the order the agent's own
# imports pull them in (each step includes the ones before it).
_IMPORTS = """
import json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
steps = [("python", rss())]
for name in sys.argv[1:]:
    __import__(name)
    steps.append((name, rss()))
print(json.dumps(steps))
"""
IMPORT_STEPS = ("numpy", "paho.mqtt.client", "cryptography.hazmat.primitives.asymmetric.ed25519",
                "edge_agent.daemon", "edge_agent.local_api", "onnxruntime")


def import_breakdown() -> list[tuple[str, float]]:
    """RSS (MiB) of a fresh interpreter after each of IMPORT_STEPS, cumulative."""
    out = subprocess.run([sys.executable, "-c", _IMPORTS, *IMPORT_STEPS], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True, timeout=120)
    return [(str(name), round(float(mib), 1)) for name, mib in json.loads(out.stdout)]


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
            filled = 0
            while filled < args.fill:
                start = filled % len(features.target)
                rows = features.features[start:start + 100]
                r = await http.post("/v1/predict", json={"features": rows.tolist()})
                r.raise_for_status()
                for i, p in enumerate(r.json()["predictions"]):
                    if i % 10 == 0:  # one in ten labelled (one request each: keep it short)
                        await http.post("/v1/feedback", json={
                            "prediction_id": p["prediction_id"],
                            "label": int(features.target[start + i])})
                filled += len(rows)
            await asyncio.sleep(1.0)  # the telemetry of the fill leaves the outbox
            fill_rss = sample_process(agent.pid).rss_mib
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
        "fill_predictions": args.fill,
        "agent_rss_mib_after_fill": round(fill_rss, 1),
        "target_mib": TARGET_MIB,
        "target_met": bool(serving) and max(serving) < TARGET_MIB,
        "agent_rss_mib_serving_median": round(steady, 1),
        "agent_rss_mib_serving_peak": round(max(serving), 1) if serving else None,
        "baseline_onnxruntime_rss_mib": round(base, 1),
        "import_rss_mib": import_breakdown(),
        "ratio_agent_serving_vs_baseline": round(steady / base, 2),
        "agent_extra_mib_over_baseline": round(steady - base, 1),
    }


def _markdown(data: dict[str, Any]) -> str:
    r = data["result"]
    rows = [
        ["agent connected, no model yet", fmt(r["agent_rss_mib_start"], 1)],
        [f"agent with the model active ({r['model_bytes'] / 1024 / 1024:.1f} MiB)",
         fmt(r["agent_rss_mib_model_loaded"], 1)],
        [f"after {r['fill_predictions']:,} predictions in batches of 100, 1 in 10 labelled",
         fmt(r["agent_rss_mib_after_fill"], 1)],
        [f"agent serving {r['rate_per_s']:g} predictions/s + labels, telemetry and monitoring "
         f"(median / peak over {r['seconds']:g} s)",
         f"**{fmt(r['agent_rss_mib_serving_median'], 1)} / "
         f"{fmt(r['agent_rss_mib_serving_peak'], 1)}** (target < {r['target_mib']:g}: "
         f"{'met' if r['target_met'] else '**missed**'})"],
        ["baseline: bare Python + numpy + onnxruntime session of the same model",
         fmt(r["baseline_onnxruntime_rss_mib"], 1)],
        ["ratio agent serving / baseline", f"{r['ratio_agent_serving_vs_baseline']}x "
                                           f"(+{r['agent_extra_mib_over_baseline']} MiB)"],
    ]
    steps, before = [], 0.0
    for name, mib in r["import_rss_mib"]:
        steps.append([f"`{name}`" if name != "python" else "Python itself", fmt(mib, 1),
                      fmt(mib - before, 1) if before else "-"])
        before = mib
    return f"""## Agent resident memory (`bench/bench_agent_memory.py`)

Measured {data['measured_at']} on {machine_line(data['machine'])}; load average
{data['machine']['load_average_1m_at_start']} before, {data['load_average_after']} after.
One `edgewise-agent` process (local HTTP API on) with {r['model_description']}; requests to its
local HTTP API; {r['records_stored']} telemetry records reached the controller.

{table(["what", "RSS (MiB)"], rows)}

What the process is made of: a fresh interpreter's RSS after each import, cumulative, in the
order the agent pulls them in (the `edgewise-agent` daemon module brings the agent, its
protocol, outbox, monitoring and update code; onnxruntime is imported when a model is loaded):

{table(["after importing", "RSS (MiB)", "added (MiB)"], steps)}

{_remarks(r)}
"""


def _remarks(r: dict[str, Any]) -> str:
    imports = dict(r["import_rss_mib"])
    verdict = "met" if r["target_met"] else "missed"
    grew = r["agent_rss_mib_serving_peak"] - r["agent_rss_mib_after_fill"]
    growth = (f"While serving it grew by {grew:.1f} MiB over {r['seconds']:g} s." if grew >= 1
              else f"It did not grow while serving ({r['seconds']:g} s, peak within "
                   f"{max(grew, 0):.1f} MiB of the figure after the fill).")
    return (
        f"Target under {r['target_mib']:g} MiB: {verdict} (peak "
        f"{fmt(r['agent_rss_mib_serving_peak'], 1)} MiB). The bare baseline, Python with numpy "
        f"and one onnxruntime session of the same model, already holds "
        f"{fmt(r['baseline_onnxruntime_rss_mib'], 1)} MiB on this build, and the import of "
        f"onnxruntime alone about "
        f"{fmt(imports['onnxruntime'] - imports['edge_agent.local_api'], 0)} MiB and numpy "
        f"{fmt(imports['numpy'] - imports['python'], 0)} MiB. The agent adds the MQTT client "
        f"(paho and the ssl module), cryptography (Ed25519 manifest signatures, imported at "
        f"start), its own modules and SQLite, and, as it serves, the feedback memory of the "
        f"last 20,000 predictions and the monitoring window "
        f"({fmt(r['agent_rss_mib_after_fill'] - r['agent_rss_mib_model_loaded'], 1)} MiB "
        f"after the fill). {growth}")



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Example: python bench/bench_agent_memory.py --quick")
    ap.add_argument("--model-mb", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=50.0, help="requests per second")
    ap.add_argument("--fill", type=int, default=25_000,
                    help="predictions made (batches of 100) before the serving phase")
    ap.add_argument("--quick", action="store_true", help="15 s of serving")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds = 15.0
    logging.basicConfig(level=logging.WARNING)
    info = machine()
    result = asyncio.run(_run(args))
    print(f"agent RSS: start {result['agent_rss_mib_start']} MiB, model loaded "
          f"{result['agent_rss_mib_model_loaded']} MiB, after {result['fill_predictions']} "
          f"predictions {result['agent_rss_mib_after_fill']} MiB, serving "
          f"{result['agent_rss_mib_serving_median']} MiB (peak "
          f"{result['agent_rss_mib_serving_peak']}); baseline onnxruntime process "
          f"{result['baseline_onnxruntime_rss_mib']} MiB -> "
          f"{result['ratio_agent_serving_vs_baseline']}x; target < {TARGET_MIB:g} MiB: "
          f"{'met' if result['target_met'] else 'MISSED'}", flush=True)
    data = {"machine": info, "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "result": result, "load_average_after": round(load_average(), 2)}
    path = write_result("agent_memory", data)
    if not args.no_doc:
        update_doc_section("agent_memory", _markdown(data))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
