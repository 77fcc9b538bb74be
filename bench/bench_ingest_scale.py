"""Controller CPU per telemetry message and per record, and 10,000 devices at 1 prediction/s.

Usage: python bench/bench_ingest_scale.py [--devices 10000] [--seconds 60] [--flush 5]
                                          [--connections 20] [--db-url URL] [--quick]

Load comes from :mod:`simulator.telemetry_load`: virtual devices with the agent's wire format
(an outbox epoch each, gap-free seqs, prediction and feedback records as the agent writes them),
a few MQTT connections publishing on every device's own topic and listening to every device's
ack topic. Nothing here knows how the controller ingests: it measures the controller process
(CPU from /proc) through the wire and the REST API only, so it measures whatever ingest is on
main when it runs.

Phases, on one Mosquitto and one fresh controller process (SQLite unless ``--db-url``):

1. **Idle**: the controller's CPU with the load's connections open and nothing sent.
2. **Cost per message and per record**: ``--cost-devices`` devices flushing every second, once
   with 1 prediction per flush and once with 20 (the same messages per second, ~20x the
   records; a tenth of predictions also get a feedback record). Controller CPU above idle =
   a·messages + b·records; two rates give a (per message) and b (per record).
3. **Fleet**: ``--devices`` devices at 1 prediction/s each, flushing every ``--flush`` s, for
   ``--seconds``: controller CPU (goal: under half a core), records acknowledged per second
   against produced, and the outstanding (sent, unacknowledged) records sampled over the run:
   a backlog that grows means the controller does not keep up.

The baseline for phase 3 is phase 2's model measured in the same run: predicted CPU =
idle + a·messages/s + b·records/s. Results: bench/results/ingest_scale.json and the
``ingest_scale`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repo importable

from bench.common import (  # noqa: E402
    fmt,
    load_average,
    machine,
    machine_line,
    say,
    stack,
    table,
    update_doc_section,
    write_result,
)
from controller.cli.client import ControllerClient  # noqa: E402
from simulator.fleet import raise_open_file_limit, sample_process  # noqa: E402
from simulator.telemetry_load import LoadSpec, TelemetryLoad  # noqa: E402

GOAL_CORES = 0.5


async def run_phase(st: Any, spec: LoadSpec, seconds: float, warmup: float,
                    drain_timeout: float) -> dict[str, Any]:
    """Run one load; measure over ``seconds`` after ``warmup``; then drain."""
    load = TelemetryLoad(st.broker.address, spec, seed=hash(spec.prefix) & 0xFFFF)
    t0 = time.monotonic()
    await load.start()
    connect_s = time.monotonic() - t0
    client = ControllerClient(st.url, timeout=30)
    try:
        load.run()
        await asyncio.sleep(warmup)
        s0, g0, h0 = st.samples(), sample_process(), client.health()["bridge"]
        stats0 = (load.stats.records_produced, load.stats.messages_sent, load.stats.records_acked,
                  load.stats.acks)
        backlog: list[tuple[float, int]] = []
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            await asyncio.sleep(min(5.0, seconds / 6))
            backlog.append((round(time.monotonic() - start, 1), load.outstanding()))
        s1, g1, h1 = st.samples(), sample_process(), client.health()["bridge"]
        wall = s1["controller"].at - s0["controller"].at
        produced = load.stats.records_produced - stats0[0]
        messages = load.stats.messages_sent - stats0[1]
        acked = load.stats.records_acked - stats0[2]
        acks = load.stats.acks - stats0[3]
        stored = int(h1.get("records_stored", 0)) - int(h0.get("records_stored", 0))
        # what the controller did in the window (a controller that falls behind does less than
        # was offered): messages handled and records handled, stored or found duplicate
        handled_msgs = int(h1.get("batches", acks)) - int(h0.get("batches", 0)) \
            if "batches" in h1 else acks
        handled_recs = sum(int(h1.get(k, 0)) - int(h0.get(k, 0))
                           for k in ("records_stored", "records_duplicate")) \
            if "records_stored" in h1 else acked
        ctl_cpu = s1["controller"].cpu_s - s0["controller"].cpu_s
        result = {
            "devices": spec.devices, "predictions_per_s": spec.predictions_per_s,
            "flush_s": spec.flush_s, "connections": spec.connections,
            "connect_s": round(connect_s, 2), "seconds": round(wall, 1),
            "messages_per_s": round(messages / wall, 1),
            "records_per_s": round(produced / wall, 1),
            "records_acked_per_s": round(acked / wall, 1),
            "acks_per_s": round(acks / wall, 1),
            "records_stored_per_s": round(stored / wall, 1),
            "handled_messages_per_s": round(handled_msgs / wall, 1),
            "handled_records_per_s": round(handled_recs / wall, 1),
            "controller_cores": round(ctl_cpu / wall, 3),
            "controller_cpu_s": round(ctl_cpu, 2),
            "broker_cores": round((s1["broker"].cpu_s - s0["broker"].cpu_s) / wall, 3),
            "generator_cores": round((g1.cpu_s - g0.cpu_s) / wall, 3),
            "controller_rss_mib": round(s1["controller"].rss_mib, 1),
            "backlog_records": backlog,
            "resent_messages": load.stats.messages_resent,
            "load_average": load_average(),
        }
        load.stop_producing()
        t1 = time.monotonic()
        while load.outstanding() and time.monotonic() - t1 < drain_timeout:
            await asyncio.sleep(0.5)
        result["drain_s"] = round(time.monotonic() - t1, 1)
        result["outstanding_after_drain"] = load.outstanding()
        return result
    finally:
        await load.stop()


def fit_costs(idle_cores: float, low: dict[str, Any], high: dict[str, Any]) -> dict[str, float]:
    """Solve cores - idle = a·msg/s + b·rec/s from two phases (the messages and records the
    controller handled, not those offered); a, b in ms of CPU."""
    m1, r1 = low["handled_messages_per_s"], low["handled_records_per_s"]
    m2, r2 = high["handled_messages_per_s"], high["handled_records_per_s"]
    c1, c2 = low["controller_cores"] - idle_cores, high["controller_cores"] - idle_cores
    det = m1 * r2 - m2 * r1
    if det == 0:
        return {"ms_per_message": float("nan"), "ms_per_record": float("nan")}
    a = (c1 * r2 - c2 * r1) / det
    b = (m1 * c2 - m2 * c1) / det
    return {"ms_per_message": round(a * 1000, 4), "ms_per_record": round(b * 1000, 4)}


def target_load(devices: int, flush_s: float, feedback_share: float, idle: float,
                costs: dict[str, float]) -> dict[str, float]:
    """The load asked for (every device at 1 prediction/s) and the cores the fitted costs say it
    needs: what the goal is about, whatever the generator managed to offer on this machine."""
    messages = devices / flush_s
    records = devices * (1 + feedback_share)
    return {"target_messages_per_s": round(messages, 1), "target_records_per_s": round(records, 1),
            "target_cores": round(idle + (costs["ms_per_message"] * messages
                                          + costs["ms_per_record"] * records) / 1000, 2)}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    raise_open_file_limit(64)
    controller_args = ["--db-url", args.db_url] if args.db_url else None
    result: dict[str, Any] = {"machine": machine(), "db": "postgresql" if args.db_url else
                              "sqlite", "goal_cores": GOAL_CORES}
    with tempfile.TemporaryDirectory(prefix="ew-ingest-scale-") as tmp, \
            stack(Path(tmp) / "stack", controller_args) as st:
        # 1. idle, with the connections of a load open
        idle_load = TelemetryLoad(st.broker.address, LoadSpec(devices=args.connections,
                                                              connections=args.connections,
                                                              prefix="idle"))
        await idle_load.start()
        await asyncio.sleep(2)
        a = st.samples()
        await asyncio.sleep(args.idle_seconds)
        b = st.samples()
        await idle_load.stop()
        idle = (b["controller"].cpu_s - a["controller"].cpu_s) / (b["controller"].at -
                                                                  a["controller"].at)
        result["idle_cores"] = round(idle, 4)
        say(f"idle: controller {idle:.3f} cores")
        # 2. cost per message and per record
        phases = {}
        for name, preds in (("low", 1.0), ("high", 20.0)):
            spec = LoadSpec(devices=args.cost_devices, predictions_per_s=preds, flush_s=1.0,
                            connections=args.connections, prefix=f"cost{name}")
            phases[name] = await run_phase(st, spec, args.cost_seconds, 5.0, 120.0)
            p = phases[name]
            say(f"cost {name}: {p['messages_per_s']} msg/s, {p['records_per_s']} rec/s, "
                f"controller {p['controller_cores']} cores, handled {p['handled_messages_per_s']} "
                f"msg/s and {p['handled_records_per_s']} rec/s")
        result["cost_phases"] = phases
        result["costs"] = fit_costs(idle, phases["low"], phases["high"])
        # the fit holds where the controller kept up (handled what was offered)
        result["costs"]["steady"] = all(
            p["handled_records_per_s"] >= 0.9 * p["records_per_s"] for p in phases.values())
        say(f"costs: {result['costs']}")
        # 3. the fleet
        spec = LoadSpec(devices=args.devices, predictions_per_s=1.0, flush_s=args.flush,
                        connections=args.connections, prefix="fleet")
        fleet = await run_phase(st, spec, args.seconds, args.flush * 2, 60.0)
        costs = result["costs"]
        fleet["predicted_cores"] = round(
            idle + (costs["ms_per_message"] * fleet["messages_per_s"]
                    + costs["ms_per_record"] * fleet["records_per_s"]) / 1000, 3)
        fleet.update(target_load(args.devices, args.flush, spec.feedback_share, idle, costs))
        backlog = fleet["backlog_records"]
        fleet["backlog_growth_records_per_s"] = round(
            (backlog[-1][1] - backlog[0][1]) / max(backlog[-1][0] - backlog[0][0], 1e-9), 1) \
            if len(backlog) > 1 else 0.0
        fleet["goal_met"] = fleet["controller_cores"] < GOAL_CORES and \
            fleet["records_acked_per_s"] >= 0.95 * fleet["records_per_s"]
        result["fleet"] = fleet
        say(f"fleet: {fleet['devices']} devices, {fleet['messages_per_s']} msg/s, "
            f"{fleet['records_per_s']} rec/s: controller {fleet['controller_cores']} cores "
            f"(predicted {fleet['predicted_cores']}), acked {fleet['records_acked_per_s']} rec/s, "
            f"backlog {backlog}")
    return result


def markdown(r: dict[str, Any]) -> str:
    c, f, low, high = r["costs"], r["fleet"], r["cost_phases"]["low"], r["cost_phases"]["high"]
    rows = [[name, p["devices"], p["messages_per_s"], p["records_per_s"],
             p["handled_messages_per_s"], p["handled_records_per_s"],
             p["records_acked_per_s"], fmt(p["controller_cores"], 3),
             fmt(p["broker_cores"], 3), fmt(p["generator_cores"], 3)]
            for name, p in (("cost, 1 prediction per message", low),
                            ("cost, 20 predictions per message", high),
                            (f"fleet, 1 prediction/s, flush every {f['flush_s']:g} s", f))]
    verdict = "met" if f["goal_met"] else "missed"
    offered = f["messages_per_s"] / f.get("target_messages_per_s", f["messages_per_s"] or 1)
    return "\n".join([
        "## Ingest at fleet scale (bench_ingest_scale.py)",
        "",
        f"Machine: {machine_line(r['machine'])}; database: {r['db']}. Load from",
        "`simulator/telemetry_load.py` (the agent's wire format, an epoch and gap-free seqs per",
        f"device, {f['connections']} MQTT connections publishing on every device's own topic);",
        "controller CPU from /proc over the measured window. Idle controller: "
        f"{fmt(r['idle_cores'], 3)} cores.",
        "",
        table(["phase", "devices", "messages/s offered", "records/s offered",
               "messages/s handled", "records/s handled", "records acked/s",
               "controller cores", "broker cores", "generator cores"], rows),
        "",
        f"Fitted from the two cost phases (same run): **{fmt(c['ms_per_message'], 3)} ms of "
        f"controller CPU per message** and **{fmt(c['ms_per_record'], 4)} ms per record**"
        f"{'' if c['steady'] else ' (the controller fell behind in a cost phase: rough)'}. "
        f"What the fleet phase's offered load needs by that model: "
        f"{fmt(f['predicted_cores'], 2)} cores; the controller used "
        f"{fmt(f['controller_cores'], 2)} (load average {f['load_average']:.1f} on "
        f"{r['machine']['cores']} cores during the run).",
        "",
        f"The load the goal names ({f['devices']:,} devices at 1 prediction/s, flushing every "
        f"{f['flush_s']:g} s: {f['target_messages_per_s']:g} messages/s, "
        f"{f['target_records_per_s']:g} records/s) needs **{fmt(f['target_cores'], 1)} cores** "
        "by those costs.",
        "",
        f"Goal (10,000 devices at 1 prediction/s under {GOAL_CORES} core, no growing backlog): "
        f"**{verdict}**. In the direct run the outstanding (unacknowledged) records were "
        f"{f['backlog_records']} (seconds into the window, records)"
        + (f", growing {f['backlog_growth_records_per_s']:g} records/s"
           if len(f["backlog_records"]) > 1 else "")
        + f"; {f['resent_messages']} messages were sent again after the ack timeout; "
        f"{f['outstanding_after_drain']} records were still outstanding {f['drain_s']} s after "
        "the load stopped."
        + (f" The generator offered only {offered:.0%} of the target messages (it had "
           f"{fmt(f['generator_cores'], 2)} cores): the direct run shows the backlog, the cost "
           "projection above carries the verdict." if offered < 0.5 else ""),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--flush", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--cost-devices", type=int, default=40)
    parser.add_argument("--cost-seconds", type=float, default=20.0)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--db-url", help="PostgreSQL URL for the controller (default SQLite)")
    parser.add_argument("--quick", action="store_true",
                        help="1,000 devices, short phases (a smoke run; not for the docs)")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    if args.quick:
        args.devices, args.seconds, args.cost_seconds, args.cost_devices = 1000, 15.0, 8.0, 20
    result = asyncio.run(main_async(args))
    path = write_result("ingest_scale" + ("_quick" if args.quick else ""), result)
    say(f"results: {path}")
    if not args.quick and not args.no_doc:
        update_doc_section("ingest_scale", markdown(result))


if __name__ == "__main__":
    main()
