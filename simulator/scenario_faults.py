"""What each event of a scenario's timeline does, one handler per action, and the registry the
runner dispatches on (:data:`FAULTS`). Each handler's docstring says what it really does.

A handler takes the running scenario (:class:`~simulator.scenario_run.ScenarioRun`: its fleet,
workload, links, controller client and report), the event, the devices it selects and how to
name them in the report.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from edge_agent.agent import EdgeAgent
from edge_agent.outbox import TelemetryOutbox
from simulator.boards import SimulatedBoard
from simulator.fleet import SETTLED_STATES
from simulator.scenario import Event, ScenarioError
from simulator.scenario_links import LinkFault
from simulator.scenario_models import train_model

if TYPE_CHECKING:
    from simulator.scenario_run import ScenarioRun

Fault = Callable[["ScenarioRun", Event, list[str], str], Awaitable[None]]


async def rollout(run: ScenarioRun, e: Event, ids: list[str], what: str) -> None:
    """Train a new version (the event's estimator/seed), register it, deploy it to the
    selected devices through the controller's REST API; report when they all run it."""
    assert run.client is not None and run.fleet is not None
    seed = e.param("seed")
    result = await asyncio.to_thread(train_model, run.s.model, e.param("estimator"),
                                     seed if seed is not None else run.s.model.seed + e.index)
    stored = await asyncio.to_thread(run.client.push_version, result.manifest,
                                     result.artifact)
    model, version = stored["model"], stored["version"]
    await run._deploy(model, version, ids)
    run.say(f"rollout of {model}:{version} ({result.report['estimator']}) to {len(ids)} "
             f"devices ({what})")
    run.spawn(_watch_rollout(run, model, version, ids, run.t()), settle_awaits=True)


async def _watch_rollout(run: ScenarioRun, model: str, version: int, ids: list[str], since: float) -> None:
    assert run.fleet is not None
    while True:
        agents = [run.fleet.agent(d) for d in ids]
        live = [a for a in agents if a.device_id not in run.fleet.killed]
        done = [a for a in live if a.active is not None and a.active.model == model
                and a.active.version == version and a.state in SETTLED_STATES]
        if live and len(done) == len(live):
            run.say(f"{model}:{version} active on all {len(done)} live targets "
                     f"({run.t() - since:.1f} s after the deployment)")
            return
        await asyncio.sleep(0.25)


async def disconnect(run: ScenarioRun, e: Event, ids: list[str], what: str) -> None:
    """``MqttLink.drop_connection()``: the agent's TCP socket is shut down, as a flaky link
    would; the broker publishes its last will (offline), the agent reconnects by itself."""
    assert run.fleet is not None
    dead = [d for d in ids if d in run.fleet.killed]
    ids = [d for d in ids if d not in run.fleet.killed]
    before = {d: run.fleet.agent(d).link.connect_count for d in ids}
    for d in ids:
        run.fleet.agent(d).link.drop_connection()
    run.say(f"disconnect {len(ids)} devices ({what})"
             + (f"; {len(dead)} selected devices were dead already" if dead else ""))
    run.spawn(_watch_reconnect(run, before, run.t(), "after the disconnect"))


async def _watch_reconnect(run: ScenarioRun, before: dict[str, int], since: float, why: str,
                           timeout: float = 60.0) -> None:
    assert run.fleet is not None
    deadline = time.monotonic() + timeout
    agents = {d: run.fleet.agent(d) for d in before}
    back: list[str] = []
    while time.monotonic() < deadline:
        # an agent restarted meanwhile is a new object: connected counts as back
        back = [d for d, n in before.items() if run.fleet.agent(d).link.connected and (
            run.fleet.agent(d) is not agents[d] or agents[d].link.connect_count > n)]
        if len(back) == len(before):
            run.say(f"all {len(back)} reconnected {run.t() - since:.1f} s {why}")
            return
        await asyncio.sleep(0.1)
    run.say(f"only {len(back)}/{len(before)} reconnected within {timeout:.0f} s {why}")


async def partition(run: ScenarioRun, e: Event, ids: list[str], what: str) -> None:
    """Link proxy: the devices' connections are closed and refused for ``duration_s``."""
    assert run.proxy is not None and run.fleet is not None
    for d in ids:
        run.proxy.set_fault(d, LinkFault(offline=True))
    run.say(f"partition: {len(ids)} devices ({what}) cut off for {e.param('duration_s')} s")
    run.spawn(_end_partition(run, ids, e.param("duration_s")))


async def _end_partition(run: ScenarioRun, ids: list[str], seconds: float) -> None:
    assert run.proxy is not None and run.fleet is not None
    await asyncio.sleep(seconds)
    before = {d: run.fleet.agent(d).link.connect_count for d in ids}
    for d in ids:
        run.proxy.set_fault(d, None)
    run.say(f"partition lifted for {len(ids)} devices")
    await _watch_reconnect(run, before, run.t(), "after the partition was lifted")


async def slow_link(run: ScenarioRun, e: Event, ids: list[str], what: str) -> None:
    """Link proxy: ``latency_s`` added to every byte each way, optionally paced to
    ``bandwidth_kbps``, for ``duration_s``."""
    fault = LinkFault(latency_s=e.param("latency_s"), bandwidth_kbps=e.param("bandwidth_kbps"))
    _link_fault(run, ids, fault, e.param("duration_s"))
    bw = f", {fault.bandwidth_kbps:g} kbit/s" if fault.bandwidth_kbps else ""
    run.say(f"slow link on {len(ids)} devices ({what}): +{fault.latency_s:g} s each "
             f"way{bw}, for {e.param('duration_s')} s")


async def lossy_link(run: ScenarioRun, e: Event, ids: list[str], what: str) -> None:
    """Link proxy: with probability ``loss`` a forwarded read stalls for a retransmission
    timeout; with ``reset_every_s``, each device's connection is also reset about that
    often (at random), for ``duration_s``."""
    assert run.proxy is not None
    _link_fault(run, ids, LinkFault(loss=e.param("loss")), e.param("duration_s"))
    every = e.param("reset_every_s")
    if every:
        run.spawn(_resets(run, ids, every, e.param("duration_s")))
    run.say(f"lossy link on {len(ids)} devices ({what}): {e.param('loss'):.0%} stalls"
             + (f", a reset every ~{every:g} s" if every else "")
             + f", for {e.param('duration_s')} s")


async def _resets(run: ScenarioRun, ids: list[str], every: float, seconds: float) -> None:
    assert run.proxy is not None
    end = time.monotonic() + seconds
    resets = 0
    while time.monotonic() < end:
        await asyncio.sleep(0.5)
        for d in ids:
            if run.rng.random() < 0.5 / every:
                resets += run.proxy.cut(d)
    run.say(f"lossy link: {resets} connections reset")


def _link_fault(run: ScenarioRun, ids: list[str], fault: LinkFault, seconds: float) -> None:
    assert run.proxy is not None
    for d in ids:
        run.proxy.set_fault(d, fault)

    async def lift() -> None:
        await asyncio.sleep(seconds)
        assert run.proxy is not None
        for d in ids:
            if run.proxy.fault(d) == fault:
                run.proxy.set_fault(d, None)
        run.say(f"link fault lifted for {len(ids)} devices")

    run.spawn(lift())


async def kill(run: ScenarioRun, e: Event, ids: list[str], what: str) -> None:
    """``EdgeAgent.kill()``: the socket is dropped without DISCONNECT (the broker publishes
    the last will), nothing is flushed; records still in memory are lost with the process,
    and counted here."""
    assert run.fleet is not None
    for d in ids:
        agent = run.fleet.agent(d)
        if d in run.fleet.killed:
            continue
        # the agent's in-memory records (not yet in its outbox) die with it
        run.unflushed[d] += agent.unflushed_records()
        run.fleet.kill(d)
    run.say(f"kill {len(ids)} agents ({what})")
    run.spawn(_watch_offline(run, ids, run.t()))


async def _watch_offline(run: ScenarioRun, ids: list[str], since: float) -> None:
    assert run.client is not None
    deadline = time.monotonic() + 30
    seen: set[str] = set()
    while time.monotonic() < deadline and len(seen) < len(ids):
        rows = await asyncio.to_thread(run.client.list_devices)
        seen = {r["device_id"] for r in rows if r["device_id"] in ids and not r.get("online")}
        await asyncio.sleep(0.25)
    run.say(f"controller saw {len(seen)}/{len(ids)} killed devices offline "
             f"({run.t() - since:.1f} s after the kill, from their last will)")


async def restart(run: ScenarioRun, e: Event, ids: list[str], what: str) -> None:
    """A new ``EdgeAgent`` on the same data directory (outbox, models, active.json), as a
    process restart would; it resumes the model it ran and sends what its outbox holds."""
    assert run.fleet is not None
    for d in ids:
        await run.fleet.restart(d)
    run.say(f"restart {len(ids)} agents ({what})")
    run.spawn(_watch_restart(run, ids, run.t()))


async def _watch_restart(run: ScenarioRun, ids: list[str], since: float) -> None:
    assert run.fleet is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        agents = [run.fleet.agent(d) for d in ids]
        if all(a.link.connected and a.runtime is not None for a in agents):
            versions = Counter(str(a.active) for a in agents)
            run.say(f"{len(ids)} restarted agents connected and serving "
                     f"{dict(versions)} ({run.t() - since:.1f} s after the restart)")
            return
        await asyncio.sleep(0.1)
    run.say("restarted agents not all connected and serving within 60 s")


async def corrupt_chunks(run: ScenarioRun, e: Event, ids: list[str], what: str) -> None:
    """A hostile client floods the chunk topics of every artifact named in a desired-state
    message with random bytes (80% of the right length) for ``duration_s``."""
    assert run.hostile is not None
    run.hostile.flood(e.param("duration_s"), e.param("per_second"))
    run.say(f"corrupt chunks: a hostile publisher floods the chunk topics "
             f"({e.param('per_second')}/s) for {e.param('duration_s')} s")


async def full_disk(run: ScenarioRun, e: Event, ids: list[str], what: str) -> None:
    """The outbox is reopened with ``max_db_pages`` at its current size (the
    ``TelemetryOutbox`` hook): inserts that need a new page fail as on a full disk and the
    refused records are counted; reopened without the cap after ``duration_s``."""
    assert run.fleet is not None

    def dropped() -> int:
        assert run.fleet is not None
        return sum(a.outbox.stats().dropped_total for a in map(run.fleet.agent, ids)
                   if a.outbox is not None)

    for d in ids:
        reopen_outbox(run, run.fleet.agent(d), cap=True)
        run._full_disk.add(d)
    before = dropped()
    run.say(f"full disk on {len(ids)} devices ({what}) for {e.param('duration_s')} s")

    async def free() -> None:
        await asyncio.sleep(e.param("duration_s"))
        assert run.fleet is not None
        for agent in map(run.fleet.agent, ids):
            agent.flush()  # what the full outbox refuses now is counted with the rest
        refused = dropped() - before
        for d in ids:
            if d in run._full_disk:
                reopen_outbox(run, run.fleet.agent(d), cap=False)
                run._full_disk.discard(d)
        run.say(f"disk space back on {len(ids)} devices; {refused} records were refused "
                 "meanwhile and counted (SQLite reused the pages acknowledged rows freed "
                 "for the rest)")

    run.spawn(free())


def reopen_outbox(run: ScenarioRun, agent: EdgeAgent, *, cap: bool) -> None:
    old = agent.outbox
    if old is None:
        return  # killed
    agent.flush()
    path, max_records, overflow = old.path, old.max_records, old.overflow
    old.close()
    agent.outbox = TelemetryOutbox(path, max_records=max_records, overflow=overflow,
                                   max_db_pages=1 if cap else None)


async def clock_skew(run: ScenarioRun, e: Event, ids: list[str], what: str) -> None:
    """Every simulated device's wall clock (the clock the fleet gives its agents) runs
    ``skew_s`` off the controller's; monotonic clocks (timeouts, windows) are not skewed."""
    run.device_clock.skew_s = float(e.param("skew_s"))
    run.say(f"clock skew: every device's clock is now {e.param('skew_s'):+g} s off the "
             "controller's")


async def broker_restart(run: ScenarioRun, e: Event, ids: list[str], what: str) -> None:
    """The Mosquitto the runner started is stopped (SIGTERM) and started again on the same
    port after ``down_s``: every device and the controller lose the broker."""
    if run.broker is None:
        raise ScenarioError("broker_restart needs the broker the runner starts itself")
    assert run.fleet is not None
    await asyncio.to_thread(run.broker.stop)
    run.say(f"broker stopped for {e.param('down_s')} s")
    await asyncio.sleep(e.param("down_s"))
    before = {a.device_id: a.link.connect_count for a in run.live}
    await asyncio.to_thread(run.broker.start)
    run.say("broker started again")
    run.spawn(_watch_reconnect(run, before, run.t(), "after the broker came back",
                                     timeout=90))


async def drift(run: ScenarioRun, e: Event, ids: list[str], what: str) -> None:
    """Through the workload: covariate shift (``sd`` standard deviations) or sensor offset
    (``offset``) added to ``features`` of the rows the devices are asked to predict, or a
    concept change (a share ``rate`` of the labels fed back disagree with the prediction);
    for ``duration_s`` or to the end."""
    assert run.workload is not None
    kind = e.param("kind")
    if kind == "concept_change":
        run.workload.change_concept(ids, rate=e.param("rate"))
        detail = f"{e.param('rate'):.0%} of labels changed"
    else:
        run.workload.shift_features(ids, e.param("features"), sd=e.param("sd"),
                                     offset=e.param("offset"))
        detail = f"features {e.param('features')} +{e.param('sd')} sd +{e.param('offset')}"
    run.say(f"drift ({kind}) on {len(ids)} devices ({what}): {detail}")
    seconds = e.param("duration_s")
    if seconds:
        async def end() -> None:
            await asyncio.sleep(seconds)
            assert run.workload is not None
            if kind == "concept_change":
                run.workload.change_concept(ids, rate=0.0)
            else:
                run.workload.shift_features(ids, e.param("features"), sd=0.0, offset=0.0)
            run.say(f"drift ({kind}) ends on {len(ids)} devices")

        run.spawn(end())


async def heat(run: ScenarioRun, e: Event, ids: list[str], what: str) -> None:
    """The simulated boards' temperature ramps to ``temp_c`` over ``ramp_s`` and stays there
    (from 80 degC the board reports throttling, as a Pi's firmware does) until ``heal``."""
    _boards(run, ids, lambda b: b.heat(float(e.param("temp_c")), float(e.param("ramp_s"))))
    run.say(f"{len(ids)} devices ({what}) heat up to {e.param('temp_c')} degC over "
            f"{e.param('ramp_s')} s")


async def memory_leak(run: ScenarioRun, e: Event, ids: list[str], what: str) -> None:
    """The agents' resident memory, as their boards report it, grows by ``mib_per_min``
    until ``heal``."""
    _boards(run, ids, lambda b: b.leak(float(e.param("mib_per_min"))))
    run.say(f"{len(ids)} devices ({what}) leak {e.param('mib_per_min')} MiB a minute")


async def fill_disk(run: ScenarioRun, e: Event, ids: list[str], what: str) -> None:
    """The boards' free space on the data directory falls to ``free_mib`` over ``ramp_s``
    (only the health readings: the outbox itself is capped by ``full_disk``)."""
    _boards(run, ids, lambda b: b.fill_disk(float(e.param("free_mib")), float(e.param("ramp_s"))))
    run.say(f"{len(ids)} devices ({what}) fill their disk to {e.param('free_mib')} MiB free over "
            f"{e.param('ramp_s')} s")


async def heal(run: ScenarioRun, e: Event, ids: list[str], what: str) -> None:
    """Ends ``heat``, ``memory_leak`` and ``fill_disk`` on the selected boards."""
    _boards(run, ids, lambda b: b.heal())
    run.say(f"{len(ids)} devices ({what}) healthy again: cooled, leak fixed, disk cleaned up")


def _boards(run: ScenarioRun, ids: list[str], change: Callable[[SimulatedBoard], None]) -> None:
    assert run.fleet is not None
    for d in ids:
        change(run.fleet.boards[d])


FAULTS: dict[str, Fault] = {
    "rollout": rollout,
    "disconnect": disconnect,
    "partition": partition,
    "slow_link": slow_link,
    "lossy_link": lossy_link,
    "kill": kill,
    "restart": restart,
    "corrupt_chunks": corrupt_chunks,
    "full_disk": full_disk,
    "clock_skew": clock_skew,
    "broker_restart": broker_restart,
    "drift": drift,
    "heat": heat,
    "memory_leak": memory_leak,
    "fill_disk": fill_disk,
    "heal": heal,
}
