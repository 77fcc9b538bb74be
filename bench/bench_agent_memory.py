"""Resident memory of one `edgewise-agent` process, against a bare onnxruntime process.

Usage: python bench/bench_agent_memory.py [--quick] [--no-warm]

A real agent daemon (``edgewise-agent --config agent.toml``, its own process, local HTTP API on)
connects to a Mosquitto and a controller started here, receives a model by a deployment, then
takes ``--fill`` predictions in batches of 100 through its local HTTP API (one in ten labelled),
so that its bounded structures (the feedback memory of the last 20,000 predictions, the
monitoring window, SQLite's page cache) are as full as on a device that has run for hours, then
serves single predictions with true labels fed back (telemetry and the monitoring window
running) for ``--seconds``. Its RSS is sampled from /proc/PID/status every 0.25 s, split into
anonymous (RssAnon: heap, stacks, the model's tensors) and file-backed (RssFile: the mapped
pages of Python, its extension modules and onnxruntime's library): at start (connected, no
model), with the model active, after the fill, and while serving (median and peak). Target:
under 80 MiB while serving, judged on the peak VmRSS of the cold run.

Cold run: before the agent starts, every shared library of this Python environment is dropped
from the page cache (bench/page_cache.py; posix_fadvise, no file changes), so the agent maps
them as it would after a device's boot. How a library got into the page cache changes how many
of its pages a process has resident (a freshly installed library, written in one go, maps with
more), so a second run first, with the page cache as found, shows that figure too
(``--no-warm`` skips it). Without ``--quick``, one more cold run of a daemon whose glibc malloc
thresholds stay at glibc's defaults shows what edge_agent/malloc_tuning.py saves.

Baseline, same run, libraries dropped the same way: a bare Python process that imports numpy and
onnxruntime, opens an ``InferenceSession`` on the same model file and runs it on one row (what
any ONNX service on the device holds at the least). Results: bench/results/agent_memory.json and
a section of docs/benchmarks.md.

One file on purpose, past 400 lines: a benchmark's workload, its same-run baseline and its report
stay together so the script reads and runs alone (shared plumbing is in ``bench/common.py``).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repo importable

from bench.common import (  # noqa: E402
    REPO_ROOT,
    SizedModel,
    cited,
    fmt,
    machine,
    machine_line,
    measurement,
    publish,
    sized_model,
    stack,
    table,
)
from bench.page_cache import drop_library_cache  # noqa: E402
from controller.cli.client import ControllerClient  # noqa: E402
from simulator.broker import free_port  # noqa: E402
from simulator.workload import Dataset, load_dataset  # noqa: E402

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
# imports pull them in (each step includes the ones before it); last, whether the agent's
# modules pulled in `cryptography` (the agent verifies with PyNaCl, edgewise_wire.public_keys).
_IMPORTS = """
import json, sys
def rss():
    d = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile"):
            d[k] = int(v.split()[0]) / 1024
    return [d["VmRSS"], d["RssAnon"], d["RssFile"]]
steps = [("python", *rss())]
for name in sys.argv[1:]:
    __import__(name)
    steps.append((name, *rss()))
print(json.dumps({"steps": steps, "cryptography": "cryptography" in sys.modules}))
"""


def import_steps() -> tuple[str, ...]:
    """The agent's heavy imports in its own order, its Ed25519 verifier (PyNaCl) third."""
    return ("numpy", "paho.mqtt.client", "edgewise_wire.public_keys", "edge_agent.daemon",
            "edge_agent.local_api", "onnxruntime")


def import_breakdown() -> dict[str, Any]:
    """RSS, anonymous and file-backed (MiB) of a fresh interpreter after each of
    :func:`import_steps`, cumulative, its libraries read cold."""
    drop_library_cache()
    out = subprocess.run([sys.executable, "-c", _IMPORTS, *import_steps()], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True, timeout=120)
    data = json.loads(out.stdout)
    return {"steps": [[str(name), *(round(float(v), 1) for v in values)]
                      for name, *values in data["steps"]],
            "cryptography_imported": bool(data["cryptography"])}


def rss_split(pid: int) -> dict[str, float]:
    """VmRSS and its anonymous and file-backed parts (MiB) from /proc/PID/status."""
    fields = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in fields:
                out[fields[key]] = int(value.split()[0]) / 1024
    return out


def _rounded(split: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in split.items()}


def baseline_rss(model_path: Path, n_features: int) -> dict[str, float]:
    drop_library_cache()
    proc = subprocess.Popen([sys.executable, "-c", _BASELINE, str(model_path), str(n_features)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the baseline process failed")
        time.sleep(0.5)
        return _rounded(rss_split(proc.pid))
    finally:
        proc.kill()
        proc.wait()


# The daemon with its glibc malloc thresholds left at glibc's defaults (for the comparison
# run): the module's function is replaced before edge_agent.daemon imports it by name.
_DAEMON_MALLOC_DEFAULTS = """
import sys
import edge_agent.malloc_tuning as tuning
tuning.fix_malloc_thresholds = lambda *args, **kwargs: False
from edge_agent.daemon import main
main(sys.argv[1:])
"""


def can_compare_malloc() -> bool:
    """The daemon sets glibc's malloc thresholds itself (edge_agent/malloc_tuning.py)."""
    daemon = (REPO_ROOT / "edge_agent" / "daemon.py").read_text()
    return "fix_malloc_thresholds" in daemon


async def agent_run(args: argparse.Namespace, model: SizedModel, features: Dataset, *,
                    cold: bool, malloc_defaults: bool = False) -> dict[str, Any]:
    """One agent daemon through the phases; ``cold``: the environment's shared libraries are
    dropped from the page cache just before it starts; ``malloc_defaults``: the daemon does
    not set glibc's malloc thresholds."""
    import httpx

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
        dropped = drop_library_cache() if cold else None
        with (tmp / "agent.log").open("wb") as agent_log:
            entry = (["-c", _DAEMON_MALLOC_DEFAULTS] if malloc_defaults
                     else ["-m", "edge_agent.daemon"])
            agent = subprocess.Popen([sys.executable, *entry, "--config", str(config)],
                                     cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=agent_log)
        client = ControllerClient(st.url)
        samples: list[dict[str, float]] = []
        try:
            for _ in range(150):
                if await asyncio.to_thread(client.list_devices):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)
            start = rss_split(agent.pid)
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
            loaded = rss_split(agent.pid)
            filled = 0
            while filled < args.fill:
                first = filled % len(features.target)
                rows = features.features[first:first + 100]
                r = await http.post("/v1/predict", json={"features": rows.tolist()})
                r.raise_for_status()
                for i, p in enumerate(r.json()["predictions"]):
                    if i % 10 == 0:  # one in ten labelled (one request each: keep it short)
                        await http.post("/v1/feedback", json={
                            "prediction_id": p["prediction_id"],
                            "label": int(features.target[first + i])})
                filled += len(rows)
            await asyncio.sleep(1.0)  # the telemetry of the fill leaves the outbox
            after_fill = rss_split(agent.pid)
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
                    samples.append(rss_split(agent.pid))
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
    if not samples:
        raise RuntimeError("no sample while serving")
    steady = statistics.median(s["rss"] for s in samples[len(samples) // 2:])
    peak = max(samples, key=lambda s: s["rss"])
    return {
        "libraries_dropped": None if dropped is None else {
            "files": dropped.files, "mib": round(dropped.bytes / 2**20), "roots": dropped.roots},
        "requests": sent, "records_stored": records,
        "start": _rounded(start), "model_loaded": _rounded(loaded),
        "after_fill": _rounded(after_fill),
        "serving_median_mib": round(steady, 1), "serving_peak": _rounded(peak),
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    model = await asyncio.to_thread(sized_model, args.model_mb)
    features = load_dataset("digits")
    # as found first: the cold run's reads leave the libraries cached the way a boot would
    warm = None if args.no_warm else await agent_run(args, model, features, cold=False)
    cold = await agent_run(args, model, features, cold=True)
    defaults = (await agent_run(args, model, features, cold=True, malloc_defaults=True)
                if args.compare_malloc and can_compare_malloc() else None)
    with tempfile.TemporaryDirectory(prefix="ew-bench-mem-base-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(model.artifact)
        base = await asyncio.to_thread(baseline_rss, path, 64)
    imports = await asyncio.to_thread(import_breakdown)
    peak = cold["serving_peak"]["rss"]
    return {
        "model": model.manifest.model, "model_bytes": model.size,
        "model_description": model.description,
        "rate_per_s": args.rate, "seconds": args.seconds, "fill_predictions": args.fill,
        "target_mib": TARGET_MIB,
        "target_met": peak < TARGET_MIB,
        "cold": cold, "warm": warm, "cold_glibc_malloc_defaults": defaults,
        "baseline_onnxruntime": base,
        "import_rss_mib": imports["steps"],
        "agent_imports_cryptography": imports["cryptography_imported"],
        "ratio_agent_serving_vs_baseline": round(cold["serving_median_mib"] / base["rss"], 2),
        "agent_extra_mib_over_baseline": round(cold["serving_median_mib"] - base["rss"], 1),
    }


def _markdown(data: dict[str, Any]) -> str:
    r = data["result"]
    cold, warm = r["cold"], r["warm"]

    def row(label: str, key: str) -> list[str]:
        c = cold[key]
        return [label, fmt(c["rss"], 1), fmt(c["anon"], 1), fmt(c["file"], 1),
                fmt(warm[key]["rss"], 1) if warm else "-"]

    peak = cold["serving_peak"]
    rows = [
        row("agent connected, no model yet", "start"),
        row(f"agent with the model active ({r['model_bytes'] / 1024 / 1024:.1f} MiB)",
            "model_loaded"),
        row(f"after {r['fill_predictions']:,} predictions in batches of 100, 1 in 10 labelled",
            "after_fill"),
        [f"agent serving {r['rate_per_s']:g} predictions/s + labels, telemetry and monitoring "
         f"(median / peak over {r['seconds']:g} s; split at the peak)",
         f"**{fmt(cold['serving_median_mib'], 1)} / {fmt(peak['rss'], 1)}** (target < "
         f"{r['target_mib']:g}: {'met' if r['target_met'] else '**missed**'})",
         fmt(peak["anon"], 1), fmt(peak["file"], 1),
         f"{fmt(warm['serving_median_mib'], 1)} / {fmt(warm['serving_peak']['rss'], 1)}"
         if warm else "-"],
    ]
    defaults = r["cold_glibc_malloc_defaults"]
    if defaults:
        d_peak = defaults["serving_peak"]
        rows.append([
            "same agent with glibc's default malloc thresholds (the daemon's `mallopt` call "
            "disabled), cold: after the fill / serving peak (split at the peak)",
            f"{fmt(defaults['after_fill']['rss'], 1)} / {fmt(d_peak['rss'], 1)}",
            fmt(d_peak["anon"], 1), fmt(d_peak["file"], 1), "-"])
    rows += [
        ["baseline: bare Python + numpy + onnxruntime session of the same model",
         fmt(r["baseline_onnxruntime"]["rss"], 1), fmt(r["baseline_onnxruntime"]["anon"], 1),
         fmt(r["baseline_onnxruntime"]["file"], 1), "-"],
        ["ratio agent serving (median) / baseline",
         f"{r['ratio_agent_serving_vs_baseline']}x (+{r['agent_extra_mib_over_baseline']} MiB)",
         "", "", ""],
    ]
    steps, before = [], 0.0
    for name, mib, anon, file in r["import_rss_mib"]:
        steps.append([f"`{name}`" if name != "python" else "Python itself", fmt(mib, 1),
                      fmt(mib - before, 1) if before else "-", fmt(anon, 1), fmt(file, 1)])
        before = mib
    dropped = cold["libraries_dropped"]
    return f"""## Agent resident memory (`bench/bench_agent_memory.py`)

Measured {data['measured_at']} on {machine_line(data['machine'])}; load average
{data['machine']['load_average_1m_at_start']} before, {data['load_average_after']} after.
One `edgewise-agent` process (local HTTP API on) with {r['model_description']}; requests to its
local HTTP API; {cold['records_stored']} telemetry records reached the controller.
*Cold* (the figures judged against the target): just before the agent started, the
{dropped['files']} shared libraries ({dropped['mib']:,} MiB) under the environment's
site-packages and Python's lib directory were dropped from the page cache (`posix_fadvise`
`DONTNEED`, bench/page_cache.py; no file changes), so the agent read them from disk as on a
device after boot (system libraries under /usr/lib, such as libc, libssl and libsqlite3, stay
cached); the baseline and the import breakdown below are measured the same way.
*Page cache as found*: an identical run just before, with the libraries cached however the
installer and earlier processes left them. RSS is VmRSS from /proc/PID/status; anonymous
(RssAnon: heap, stacks, tensors) and file-backed (RssFile: mapped pages of Python, extension
modules, onnxruntime's library) add up to it (with a few KiB of shared memory).

{table(["what", "RSS, cold (MiB)", "anonymous", "file-backed",
        "RSS, page cache as found (MiB)"], rows)}

What the process is made of: a fresh interpreter's RSS after each import, cumulative, in the
order the agent pulls them in (the `edgewise-agent` daemon module brings the agent, its
protocol, outbox, monitoring and update code; onnxruntime is imported when a model is loaded),
libraries cold:

{table(["after importing", "RSS (MiB)", "added (MiB)", "anonymous", "file-backed"], steps)}

{_remarks(r)}
"""


def _split_text(split: dict[str, float]) -> str:
    return f"{split['rss']} MiB (anon {split['anon']}, file {split['file']})"


def _remarks(r: dict[str, Any]) -> str:
    cold, warm, base = r["cold"], r["warm"], r["baseline_onnxruntime"]
    peak, loaded, fill = cold["serving_peak"], cold["model_loaded"], cold["after_fill"]
    names = [step[0] for step in r["import_rss_mib"]]
    rss = {step[0]: step[1] for step in r["import_rss_mib"]}
    ort_added = rss["onnxruntime"] - rss[names[names.index("onnxruntime") - 1]]
    margin = TARGET_MIB - peak["rss"]
    text = [
        f"Target under {r['target_mib']:g} MiB, judged on the cold peak: "
        f"{'met' if r['target_met'] else '**missed**'} ({fmt(peak['rss'], 1)} MiB, "
        f"{abs(margin):.1f} MiB {'under' if margin > 0 else 'over'}). Of the peak, "
        f"{fmt(peak['file'], 1)} MiB is file-backed, the mapped code of Python and its "
        f"extension modules (ssl, sqlite3), numpy and onnxruntime (whose import adds "
        f"{ort_added:.1f} MiB), and "
        f"{fmt(peak['anon'], 1)} MiB anonymous. The bare baseline, numpy and one onnxruntime "
        f"session of the same model, already holds {fmt(base['rss'], 1)} MiB "
        f"({fmt(base['file'], 1)} file-backed); the agent adds the MQTT client (paho and the ssl "
        f"module), its own modules and SQLite, and, as it serves, the feedback memory of the "
        f"last 20,000 predictions and the monitoring window: the fill added "
        f"{fill['anon'] - loaded['anon']:.1f} MiB anonymous."]
    grew = peak["rss"] - fill["rss"]
    text.append(f"While serving it grew by {grew:.1f} MiB over {r['seconds']:g} s." if grew >= 1
                 else f"It did not grow while serving ({r['seconds']:g} s, peak within "
                      f"{max(grew, 0):.1f} MiB of the figure after the fill).")
    why = ["Why the figure changed from the 106.1 MiB peak of 2026-11-27 04:52 UTC ("
           f"{cited('onnxruntime', '1.32.0')}; cryptography imported, glibc's default malloc "
           "thresholds, libraries cached as installed):"]
    defaults = r["cold_glibc_malloc_defaults"]
    if defaults:
        more = defaults["serving_peak"]["rss"] - peak["rss"]
        why.append(
            f"The daemon fixes glibc's mmap and trim thresholds at 128 KiB in its `main()` "
            f"(edge_agent/malloc_tuning.py): with glibc's defaults the same cold run peaked "
            f"{more:.1f} MiB higher ({fmt(defaults['serving_peak']['rss'], 1)} MiB, "
            f"{fmt(defaults['serving_peak']['anon'], 1)} anonymous). By default glibc raises "
            f"its mmap threshold each time a large mmap'd block is freed, so after onnxruntime "
            f"has loaded the model and run a few batches its later large buffers come from the "
            f"heap and stay resident.")
    else:
        why.append(
            "The daemon fixes glibc's mmap and trim thresholds at 128 KiB in its `main()` "
            "(edge_agent/malloc_tuning.py), so that onnxruntime's large buffers are returned "
            "when freed; the run without (`--compare-malloc`, on in the full run) was skipped.")
    why.append(
        "`cryptography` is not imported: the agent checks Ed25519 manifest signatures with "
        "PyNaCl (libsodium, edgewise_wire/public_keys.py; its import costs are in the section "
        "on Ed25519 verification); cryptography's import had added 8.5 MiB (figures of "
        "2026-11-27 04:52 UTC)."
        if not r["agent_imports_cryptography"] else
        "The agent still imports `cryptography` (Ed25519 manifest signatures).")
    why.append(
        "onnxruntime is capped below 1.24 for the agent (pyproject.toml): measured once on this "
        "machine in side environments, cold, a baseline process like the one above held 49.0 "
        "MiB with onnxruntime 1.23.2 and 57.2 MiB with 1.32.0, 6 MiB of the difference the "
        "larger library's mapped pages.")
    if warm:
        diff = warm["serving_peak"]["rss"] - peak["rss"]
        why.append(
            f"Page cache: with the libraries cached as found the peak was "
            f"{fmt(warm['serving_peak']['rss'], 1)} MiB ({diff:+.1f} MiB, "
            f"{fmt(warm['serving_peak']['file'], 1)} file-backed)"
            + ("; the same, because these libraries had already been read back from disk since "
               "their install (earlier runs drop them), so they were cached as after a boot."
               if abs(diff) < 1 else "."))
    why.append(
        "How a library entered the page cache matters: straight after an install, whose files "
        "were written in one go, their pages are cached in large folios and a process maps "
        "more of them. On a copy of onnxruntime 1.23.2's package written that way, importing "
        "numpy and onnxruntime left 34.5 MiB file-backed resident, and 25.2 MiB once the "
        "library was dropped from the page cache; on the whole agent the difference was about "
        "13 MiB (measured earlier in this checkout). Once a library has been read back from disk (after a reboot, or after the "
        "drop here) it maps as on a booted device, which is why the cold figure is the one "
        "held to the target.")
    return " ".join(text) + "\n\n" + " ".join(why)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Example: python bench/bench_agent_memory.py --quick")
    ap.add_argument("--model-mb", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=50.0, help="requests per second")
    ap.add_argument("--fill", type=int, default=25_000,
                    help="predictions made (batches of 100) before the serving phase")
    ap.add_argument("--quick", action="store_true", help="15 s of serving")
    ap.add_argument("--no-warm", action="store_true",
                    help="skip the run with the page cache as found (the cold run only)")
    ap.add_argument("--compare-malloc", action=argparse.BooleanOptionalAction, default=None,
                    help="one more cold run with glibc's default malloc thresholds (default: "
                         "on, off with --quick)")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds = 15.0
    if args.compare_malloc is None:
        args.compare_malloc = not args.quick
    logging.basicConfig(level=logging.WARNING)
    info = machine()
    result = asyncio.run(_run(args))
    for label, run in (("page cache as found", result["warm"]), ("cold", result["cold"]),
                       ("cold, glibc malloc defaults", result["cold_glibc_malloc_defaults"])):
        if run is None:
            continue
        print(f"agent RSS, {label}: start {_split_text(run['start'])}, model loaded "
              f"{_split_text(run['model_loaded'])}, after {result['fill_predictions']} "
              f"predictions {_split_text(run['after_fill'])}, serving median "
              f"{run['serving_median_mib']} MiB, peak {_split_text(run['serving_peak'])}",
              flush=True)
    print(f"baseline onnxruntime process (cold) {_split_text(result['baseline_onnxruntime'])}"
          f" -> {result['ratio_agent_serving_vs_baseline']}x; target < {TARGET_MIB:g} MiB "
          f"(cold peak): {'met' if result['target_met'] else 'MISSED'}", flush=True)
    publish("agent_memory", measurement(info, result=result), _markdown, doc=not args.no_doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
