"""What a scenario run reports: what the controller saw (devices, versions, alerts and when they
first fired), each device's account of records made, stored and lost, and the checks the
scenario's ``[expect]`` table asks for."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import TYPE_CHECKING

import httpx

from edge_agent.outbox import OutboxError, TelemetryOutbox
from simulator.scenario_report import DeviceAccount

if TYPE_CHECKING:
    from simulator.scenario_run import ScenarioRun


async def _controller_rows(run: ScenarioRun) -> list[dict]:
    """The controller's rows of this run's devices, once what it shows each live agent running
    (and online) matches the agent itself, or when ``settle_timeout_s`` has passed. Reported
    states and presence travel on their own topics, unacknowledged, so under load the
    controller's view trails the fleet's by a moment after the telemetry has settled."""
    assert run.client is not None
    ids = {d for d, _, _ in run.devices}
    expected = {a.device_id: (f"{a.active.model}:{a.active.version}" if a.active else "None:None",
                              a.link.connected) for a in run.live}
    deadline = time.monotonic() + run.o.settle_timeout_s
    while True:
        rows = [r for r in await asyncio.to_thread(run.client.list_devices)
                if r["device_id"] in ids]
        seen = {r["device_id"]: (f"{r.get('active_model')}:{r.get('active_version')}",
                                 bool(r.get("online"))) for r in rows}
        if all(seen.get(d) == e for d, e in expected.items()) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.5)


async def observe_controller(run: ScenarioRun) -> None:
    assert run.client is not None and run.fleet is not None
    ours = await _controller_rows(run)
    cv = run.report.controller_view
    cv["devices"] = len(ours)
    cv["online"] = sum(1 for r in ours if r.get("online"))
    cv["offline"] = sorted(r["device_id"] for r in ours if not r.get("online"))[:10]
    cv["versions"] = dict(Counter(f"{r.get('active_model')}:{r.get('active_version')}"
                                  for r in ours))
    cv["states"] = dict(Counter(str(r.get("state")) for r in ours))
    with contextlib.suppress(Exception):
        health = await asyncio.to_thread(run.client.health)
        cv["bridge"] = {k: v for k, v in health.get("bridge", {}).items() if v}
        cv["chunks"] = health.get("chunks", {})
    cv["alerts"] = await asyncio.to_thread(_fired_alerts, run)
    agents = run.fleet.agents
    versions = Counter(str(a.active) for a in run.live)
    run.report.end_state = {
        "live": len(run.live), "killed": len(run.fleet.killed),
        "connected": sum(1 for a in run.live if a.link.connected),
        # a device that rolled back (its probation failed) failed its update too
        "failed": sum(1 for a in run.live if a.state in ("failed", "rolled_back")),
        "versions": dict(versions)}
    run.report.agent_counters = {
        "reconnects": sum(max(0, a.link.connect_count - 1) for a in agents),
        "restarts": run.fleet.restarts,
        "messages dropped (malformed/unexpected)": sum(
            sum(a.dropped_messages.values()) for a in agents),
        "handler errors": sum(a.link.handler_errors for a in agents)}
    run.report.agent_warnings = run._warnings.counts
    if run.workload is not None:
        run.report.workload = dict(run.workload.stats)


def _fired_alerts(run: ScenarioRun) -> dict[str, int]:
    """Alert kinds that fired during the run (needs the monitoring API; {} without it)."""
    with httpx.Client(base_url=run.url + "/api/v1", timeout=30) as http:
        with contextlib.suppress(httpx.HTTPError):
            http.post("/alerts/evaluate")
        try:
            r = http.get("/alerts/history", params={"limit": 10_000})
        except httpx.HTTPError:
            return {}
        if r.status_code != 200:
            return {}
        fired = [ev for ev in r.json() if ev.get("event", "fired") == "fired"]
        first: dict[str, float] = {}
        for ev in fired:
            kind, ts = str(ev.get("kind")), ev.get("ts")
            if isinstance(ts, (int, float)) and run.t0_wall:
                first[kind] = min(first.get(kind, float("inf")), ts - run.t0_wall)
        run.report.controller_view["alerts_first_fired_at_s"] = {
            k: round(v, 1) for k, v in sorted(first.items())}
        return dict(Counter(str(ev.get("kind")) for ev in fired))


async def account(run: ScenarioRun) -> None:
    """Stop the agents cleanly, then compare each outbox file's counters with the
    controller's rows for that device."""
    assert run.fleet is not None and run.client is not None
    await run.fleet.stop(drain_timeout=5)
    accounts = []
    http = httpx.Client(base_url=run.url + "/api/v1", timeout=30)
    try:
        for agent in run.fleet.agents:
            path = agent.config.data_dir / "outbox.sqlite"
            try:
                with TelemetryOutbox(path) as outbox:
                    st = outbox.stats()
            except OutboxError as exc:
                run.say(f"cannot read the outbox of {agent.device_id}: {exc}")
                continue
            r = await asyncio.to_thread(http.get, "/telemetry/count",
                                        params={"device_id": agent.device_id})
            stored = int(r.json()["count"]) if r.status_code == 200 else -1
            accounts.append(DeviceAccount(agent.device_id, st.last_seq, stored, st.pending,
                                          st.dropped_total, run.unflushed[agent.device_id]))
    finally:
        http.close()
    run.report.accounts = accounts


def check(run: ScenarioRun) -> None:
    x, r = run.s.expect, run.report
    assert run.fleet is not None
    if x.lost is not None:
        r.checks.append(("telemetry lost", r.lost <= x.lost,
                         f"{r.lost} lost (expected at most {x.lost})"))
    if x.all_online:
        n = r.controller_view.get("online", 0)
        want = len(run.fleet) - len(run.fleet.killed)
        r.checks.append(("every live device online at the controller", n >= want,
                         f"{n}/{want}"))
    if x.all_on_latest:
        wrong = [a.device_id for a in run.live if a.device_id in run.latest and (
            a.active is None or (a.active.model, a.active.version) != run.latest[a.device_id])]
        r.checks.append(("every live device runs the last version sent to it", not wrong,
                         f"{len(wrong)} do not" + (f" ({wrong[:3]})" if wrong else "")))
    fired = r.controller_view.get("alerts", {})
    for kind in x.alerts:
        r.checks.append((f"alert {kind!r} fired", kind in fired,
                         f"fired: {fired or 'none'}"))
