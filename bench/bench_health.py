"""What device health costs the agent: CPU per sample and resident memory, against baselines.

Usage: python bench/bench_health.py [--quick] [--no-doc]

1. CPU: :class:`edge_agent.health.sources.HealthSources` reading this machine's /proc and /sys
   plus :class:`~edge_agent.health.sampler.HealthSampler` tallying the reading, timed over
   ``--samples`` samples (median of five rounds), as a share of one core at the default interval
   (``health_sample_s`` = 5 s). Baseline in the same run: psutil (when installed) taking the
   same readings (process RSS and CPU, memory available, load, disk usage, temperatures).
2. Memory: two real agents, each in its own fresh process with the same ONNX model (iris) and no
   reachable broker (so no broker traffic differs), serving single predictions at ``--rate`` for
   ``--seconds``: one with health sampling and the log ring off (``health_sample_s = 0``,
   ``log_ring_lines = 0``: the agent as it was), one with both on, sampling every 0.1 s (fifty
   times the default rate, so its windows roll many times). Peak and median VmRSS of each
   (/proc/PID/status every 0.25 s) and the difference. Targets: under 1% of a core, under
   2 MiB more resident, the agent under 80 MiB.

Results: bench/results/health.json and a section of docs/benchmarks.md. Figures from a shared
machine under load: the CPU figure is a median, the memory one a difference of two processes
measured side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repo importable

from bench.common import REPO_ROOT, fmt, machine, machine_line, measurement, publish, table  # noqa: E402

DEFAULT_INTERVAL_S = 5.0

AGENT = r"""
import asyncio, json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from edge_agent.malloc_tuning import fix_malloc_thresholds
fix_malloc_thresholds()
from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig
from edgewise_mqtt.link import BrokerAddress

health, seconds, rate, data_dir = sys.argv[2] == "on", float(sys.argv[3]), float(sys.argv[4]), Path(sys.argv[5])
rows = json.loads((data_dir / "rows.json").read_text())

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

async def main():
    config = AgentConfig(device_id="bench-health", data_dir=data_dir,
                         broker=BrokerAddress("127.0.0.1", int(sys.argv[6])), metrics_window_s=1.0,
                         health_sample_s=0.1 if health else 0.0,
                         log_ring_lines=200 if health else 0)
    agent = EdgeAgent(config)
    await agent.start(wait_connected=False)
    samples, i, end = [], 0, time.monotonic() + seconds
    next_sample = 0.0
    while time.monotonic() < end:
        agent.predict(rows[i % len(rows)])
        i += 1
        if time.monotonic() >= next_sample:
            samples.append(rss())
            next_sample = time.monotonic() + 0.25
        await asyncio.sleep(1.0 / rate)
    await agent.stop()
    print(json.dumps({"rss": samples, "predictions": i}))

asyncio.run(main())
"""


def sampler_cost(samples: int, tmp: Path) -> dict[str, Any]:
    from edge_agent.health.sampler import HealthSampler
    from edge_agent.health.sources import HealthSources

    sources = HealthSources(tmp)
    sampler = HealthSampler(sources, sample_s=1e-9, window_s=1e9, started_ts=0.0, now=0.0,
                            mono=0.0)
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for i in range(samples):
            sampler.sample(float(i), {"outbox_backlog": 0.0, "rtt_ms": 1.0}, 1)
        rounds.append((time.perf_counter() - started) / samples * 1e6)
    reading = sources.read()
    return {"us_per_sample": statistics.median(rounds), "rounds_us": rounds,
            "readings": sorted(reading), "problems": dict(sources.problems)}


def prediction_path_cost(calls: int, tmp: Path) -> dict[str, float]:
    """µs the agent adds to each inference call for its model's cost, as agent.predict does
    it (one call in COST_SAMPLE reads the process CPU clock twice; every call is tallied);
    and, for scale, what reading the clock on every call would cost."""
    from edge_agent.health.sampler import HealthSampler
    from edge_agent.health.sources import HealthSources

    sampler = HealthSampler(HealthSources(tmp), sample_s=1.0, window_s=1e9, started_ts=0.0,
                            now=0.0, mono=0.0)
    window = sampler.window
    sampled, every = [], []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            timed = sampler.time_this_call()
            cpu = time.process_time() if timed else 0.0
            window.observe_call(1, 0.1, time.process_time() - cpu if timed else None)
        sampled.append((time.perf_counter() - started) / calls * 1e6)
        started = time.perf_counter()
        for _ in range(calls):
            cpu = time.process_time()
            window.observe_call(1, 0.1, time.process_time() - cpu)
        every.append((time.perf_counter() - started) / calls * 1e6)
    return {"sampled_us": statistics.median(sampled), "every_call_us": statistics.median(every)}


def psutil_cost(samples: int, tmp: Path) -> dict[str, Any] | None:
    try:
        import psutil
    except ImportError:
        return None
    process = psutil.Process()
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(samples):
            process.memory_info()
            process.cpu_times()
            psutil.virtual_memory()
            psutil.getloadavg()
            psutil.disk_usage(str(tmp))
            if hasattr(psutil, "sensors_temperatures"):
                psutil.sensors_temperatures()
        rounds.append((time.perf_counter() - started) / samples * 1e6)
    return {"us_per_sample": statistics.median(rounds), "rounds_us": rounds,
            "version": psutil.__version__}


def agent_rss(health: bool, seconds: float, rate: float) -> dict[str, Any]:
    """The child imports the agent only: the model is converted and installed here."""
    from simulator.broker import free_port
    from simulator.workload import load_dataset
    from tests.harness.telemetry import install_model, iris_conversion

    with tempfile.TemporaryDirectory(prefix="bench-health-") as tmp:
        data_dir = Path(tmp) / "dev"
        install_model(data_dir, iris_conversion())
        (data_dir / "rows.json").write_text(json.dumps(load_dataset("iris").features.tolist()))
        out = subprocess.run(
            [sys.executable, "-c", AGENT, str(REPO_ROOT), "on" if health else "off",
             str(seconds), str(rate), str(data_dir), str(free_port())],
            capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    rss = data["rss"][len(data["rss"]) // 4:]  # after start-up
    return {"peak_mib": round(max(rss), 2), "median_mib": round(statistics.median(rss), 2),
            "predictions": data["predictions"]}


def _markdown(data: dict[str, Any]) -> str:
    cpu, base, off, on = data["sampler"], data["psutil"], data["agent_off"], data["agent_on"]
    rows = [["Edgewise sampler (/proc, /sys read directly)", fmt(cpu["us_per_sample"], 1),
             f"{data['core_share_pct']:.4f}%"]]
    if base is not None:
        rows.append([f"baseline: psutil {base['version']}, same readings",
                     fmt(base["us_per_sample"], 1),
                     f"{base['us_per_sample'] / (DEFAULT_INTERVAL_S * 1e6) * 100:.4f}%"])
    ratio = (f" The sampler costs {data['ratio_vs_psutil']:.2f}x what psutil takes for the same "
             "readings;" if base is not None else "")
    return "\n".join([
        "## Device health: the sampler's cost", "",
        f"`python bench/bench_health.py{' --quick' if data['quick'] else ''}` "
        f"({data['measured_at']}; {machine_line(data['machine'])}; load average after "
        f"{data['load_average_after']}, a shared machine: figures are medians).", "",
        table(["per sample", "µs", f"of one core at one sample per {DEFAULT_INTERVAL_S:g} s"],
              rows), "",
        f"Readings on this machine: {', '.join(cpu['readings'])}.{ratio} psutil is not a "
        "dependency of the agent. Each inference call also pays "
        f"{data['prediction_path']['sampled_us']:.2f} µs for its model's cost (one call in 16 "
        "reads the process CPU clock, a system call; every call is tallied); reading the clock "
        f"on every call would cost {data['prediction_path']['every_call_us']:.2f} µs.", "",
        table(["agent process (iris, offline, single predictions)", "median RSS MiB",
               "peak RSS MiB", "predictions"],
              [["health off (`health_sample_s = 0`, `log_ring_lines = 0`)", off["median_mib"],
                off["peak_mib"], off["predictions"]],
               ["health on, sampled every 0.1 s (50x the default)", on["median_mib"],
                on["peak_mib"], on["predictions"]]]), "",
        f"Health adds {data['rss_added_mib']:+.2f} MiB at the median and "
        f"{data['peak_added_mib']:+.2f} MiB at the peak: within what two identical agent "
        "processes differ by (a few hundred KiB either way), so no more than that. Targets: "
        f"under 1% of a core, under 2 MiB, the agent under 80 MiB (peak {on['peak_mib']} MiB).",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Example: python bench/bench_health.py --quick")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=50.0, help="predictions per second")
    ap.add_argument("--quick", action="store_true", help="500 samples, 10 s per agent")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.samples, args.seconds = 500, 10.0
    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        sampler = sampler_cost(args.samples, Path(tmp))
        base = psutil_cost(args.samples, Path(tmp))
        path = prediction_path_cost(args.samples * 20, Path(tmp))
    off = agent_rss(False, args.seconds, args.rate)
    on = agent_rss(True, args.seconds, args.rate)
    share = sampler["us_per_sample"] / (DEFAULT_INTERVAL_S * 1e6) * 100
    data = measurement(
        info, quick=args.quick, sampler=sampler, psutil=base, core_share_pct=share,
        ratio_vs_psutil=(sampler["us_per_sample"] / base["us_per_sample"]) if base else None,
        prediction_path=path, agent_off=off, agent_on=on,
        rss_added_mib=round(on["median_mib"] - off["median_mib"], 2),
        peak_added_mib=round(on["peak_mib"] - off["peak_mib"], 2))
    print(f"sampler: {sampler['us_per_sample']:.1f} us/sample = {share:.4f}% of a core at one "
          f"sample per {DEFAULT_INTERVAL_S:g} s"
          + (f"; psutil, same readings: {base['us_per_sample']:.1f} us" if base else ""))
    print(f"agent RSS median/peak: health off {off['median_mib']}/{off['peak_mib']} MiB, on "
          f"{on['median_mib']}/{on['peak_mib']} MiB ({data['rss_added_mib']:+.2f} / "
          f"{data['peak_added_mib']:+.2f} MiB)")
    publish("health", data, _markdown, doc=not args.no_doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
