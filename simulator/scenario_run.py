"""Run a scenario: a broker, a controller, a simulated fleet, a workload and a timeline of faults,
then an account of what happened, what the controller saw and what was lost.

    report = run_scenario_sync(load_scenario(Path("simulator/scenarios/flaky-site.toml")),
                               RunOptions(workdir=Path("/tmp/scenario")))
    print(render(report))

The runner starts Mosquitto and a controller process of its own unless it is given a broker and a
controller URL. What each event really does is written next to its handler below and in
docs/simulator.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import subprocess
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from controller.cli.client import ControllerClient
from edge_agent.agent import EdgeAgent
from edge_agent.outbox import OutboxError, TelemetryOutbox
from edgewise_mqtt.link import BrokerAddress, MqttLink
from edgewise_wire import Desired, ProtocolError, decode
from edgewise_wire.manifest import ArtifactRef
from edgewise_wire.topics import DeviceChannel, chunk_topic, device_wildcard
from simulator.broker import BrokerProcess, mosquitto_broker
from simulator.fleet import SETTLED_STATES, DeviceGroup, SimulatedFleet, sample_process
from simulator.keys import controller_trusted_keys
from simulator.scenario import (
    PROXIED_ACTIONS,
    Event,
    ModelSpec,
    Scenario,
    ScenarioError,
    select,
)
from simulator.scenario_links import LinkFault, LinkProxy
from simulator.scenario_report import DeviceAccount, ScenarioReport
from simulator.workload import Workload, load_dataset

log = logging.getLogger("edgewise.simulator.scenario")

PREFIX = "sim"


@dataclass
class RunOptions:
    workdir: Path
    broker: BrokerAddress | None = None  # None: start Mosquitto in workdir
    controller_url: str | None = None  # None: start a controller process in workdir
    progress: Callable[[str], None] = field(default=lambda text: None)
    settle_timeout_s: float = 60.0


# -- models -----------------------------------------------------------------------------------------

def train_model(spec: ModelSpec, estimator: str | None = None, seed: int | None = None) -> Any:
    """Train ``estimator`` on the bundled dataset and convert it (parity checked) to ONNX."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from converters import convert_sklearn

    kind = estimator or spec.estimator
    rs = spec.seed if seed is None else seed
    data = load_dataset(spec.dataset)
    if kind == "random_forest":
        model: Any = RandomForestClassifier(n_estimators=20, max_depth=8, random_state=rs)
    elif kind == "mlp":
        model = make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=400, random_state=rs))
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=rs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a few iterations short is fine
        model.fit(data.features, data.target)
    return convert_sklearn(model, data.features, name=spec.registry_name, labels=data.target,
                           feature_names=data.feature_names)


# -- helpers ------------------------------------------------------------------------------------------

class _WarningCounter(logging.Handler):
    """Counts the agents' warnings and errors by message template (what the devices logged)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("edgewise.agent") or record.name == "edgewise.mqtt":
            template = str(record.msg).replace("%s: ", "", 1) if isinstance(record.msg, str) \
                else str(record.msg)
            self.counts[template[:90]] += 1


class SkewedClock:
    """The simulated devices' wall clock: ``skew_s`` ahead (negative: behind) of this host's,
    which the controller (another process) reads. The fleet's agents are given it."""

    def __init__(self) -> None:
        self.skew_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.skew_s


class _HostilePublisher:
    """A client on the broker that learns artifact hashes from the desired-state messages (as
    anyone allowed to read them could) and floods their chunk topics with garbage."""

    def __init__(self, broker: BrokerAddress, rng: random.Random) -> None:
        self.refs: dict[str, ArtifactRef] = {}
        self.sent = 0
        self._rng = rng
        self._until = 0.0
        self._rate = 0.0
        self._task: asyncio.Task[None] | None = None
        self.link = MqttLink(f"ew-hostile-{os.urandom(3).hex()}", broker,
                             on_message=self._on_message,
                             on_connect=lambda: self.link.subscribe(
                                 device_wildcard(DeviceChannel.DESIRED)))

    def _on_message(self, topic: str, payload: bytes) -> None:
        with contextlib.suppress(ProtocolError):
            desired = decode(payload, Desired)
            if desired.manifest is not None:
                ref = desired.manifest.artifact
                self.refs[ref.sha256] = ref

    async def start(self) -> None:
        await self.link.start()

    def flood(self, seconds: float, per_second: float) -> None:
        self._until = time.monotonic() + seconds
        self._rate = per_second
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while time.monotonic() < self._until:
            for ref in list(self.refs.values()):
                index = self._rng.randrange(ref.chunk_count)
                length = ref.chunk_length(index)
                if self._rng.random() < 0.2:  # some of the wrong length, most of the right one
                    length = max(1, length + self._rng.choice((-7, 13)))
                self.link.publish(chunk_topic(ref.sha256, index), os.urandom(length))
                self.sent += 1
            await asyncio.sleep(1.0 / max(self._rate, 0.1))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.link.stop()


# -- the run ---------------------------------------------------------------------------------------------

class ScenarioRun:
    def __init__(self, scenario: Scenario, options: RunOptions) -> None:
        self.s = scenario
        self.o = options
        self.rng = random.Random(scenario.seed)
        self.report = ScenarioReport(
            name=scenario.name, description=scenario.description, source=scenario.source,
            devices=scenario.device_count,
            groups=[{"name": g.name, "count": g.count, "labels": g.labels,
                     "device_class": g.device_class} for g in scenario.groups])
        self.devices = [(f"{PREFIX}-{g.name}-{i:04d}", g.name, g.labels)
                        for g in scenario.groups for i in range(g.count)]
        # every event's devices, drawn once, in timeline order, from the scenario's seed
        self.targets: dict[int, list[str]] = {
            e.index: select(e.selector, self.devices, self.rng) for e in scenario.events}
        self.proxied = {d for e in scenario.events if e.action in PROXIED_ACTIONS
                        for d in self.targets[e.index]}
        self.broker: BrokerProcess | None = None
        self.broker_address: BrokerAddress | None = options.broker
        self.controller_proc: subprocess.Popen[bytes] | None = None
        self.url = options.controller_url or ""
        self.client: ControllerClient | None = None
        self.fleet: SimulatedFleet | None = None
        self.workload: Workload | None = None
        self.proxy: LinkProxy | None = None
        self.hostile: _HostilePublisher | None = None
        self.latest: dict[str, tuple[str, int]] = {}  # device -> (model, version) last sent
        self.unflushed: Counter[str] = Counter()
        self.t0 = 0.0
        self.t0_wall = 0.0
        self._warnings = _WarningCounter()
        self._background: set[asyncio.Task[Any]] = set()
        self._full_disk: set[str] = set()
        self.device_clock = SkewedClock()

    def t(self) -> float:
        return time.monotonic() - self.t0 if self.t0 else 0.0

    def say(self, text: str) -> None:
        self.report.note(self.t(), text)
        self.o.progress(f"t={self.t():7.2f}s  {text}")

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def live(self) -> list[EdgeAgent]:
        assert self.fleet is not None
        return [a for a in self.fleet.agents if a.device_id not in self.fleet.killed]

    # -- setup and teardown ------------------------------------------------------------------------

    async def setup(self) -> None:
        from simulator.demo import start_controller

        o, s = self.o, self.s
        o.workdir.mkdir(parents=True, exist_ok=True)
        if self.broker_address is None:
            self.broker = mosquitto_broker(o.workdir / "broker")
            await asyncio.to_thread(self.broker.start)
            self.broker_address = self.broker.address
        self.report.broker = str(self.broker_address)
        if not self.url:
            if self.broker is None:
                raise ScenarioError("a controller URL is needed with an external broker")
            extra: list[str] = []
            if s.controller:
                conf = o.workdir / "controller.toml"
                conf.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in
                                        s.controller.items()))
                extra = ["--config", str(conf)]
            self.controller_proc, self.url = await asyncio.to_thread(
                start_controller, o.workdir / "controller", self.broker, None, extra)
        self.report.controller = self.url
        self.client = ControllerClient(self.url, timeout=30)
        logging.getLogger("edgewise").addHandler(self._warnings)

        o.progress(f"training {s.model.estimator} on {s.model.dataset} and converting it to ONNX")
        result = await asyncio.to_thread(train_model, s.model)
        stored = await asyncio.to_thread(self.client.push_version, result.manifest,
                                         result.artifact)
        self.report.setup_notes.append(
            f"model {stored['model']}:{stored['version']} ({s.model.estimator}, "
            f"{stored['size']} bytes)")

        if self.proxied:
            self.proxy = LinkProxy(self.broker_address, seed=s.seed)
            proxy_address = await self.proxy.start()
            self.report.setup_notes.append(
                f"{len(self.proxied)} devices reach the broker through the link proxy "
                f"{proxy_address} (they get link faults)")
        groups = [DeviceGroup(g.name, g.count, g.labels, g.device_class, g.agent)
                  for g in s.groups]
        proxy = self.proxy

        def broker_for(device_id: str) -> BrokerAddress:
            assert self.broker_address is not None
            if proxy is not None and proxy.address is not None and device_id in self.proxied:
                return proxy.address
            return self.broker_address

        # issue 4: with a controller of its own, the agents trust its signing keys (enforce
        # mode); an external controller's keys are not known here (development mode)
        trusted: tuple[str, ...] = ()
        if self.controller_proc is not None:
            trusted = controller_trusted_keys(o.workdir / "controller")
        self.fleet = SimulatedFleet.from_groups(self.broker_address, groups,
                                                o.workdir / "devices", prefix=PREFIX,
                                                broker_for=broker_for, trusted_keys=trusted,
                                                clock=self.device_clock)
        started = time.monotonic()
        await self.fleet.start()
        self.report.setup_notes.append(
            f"{len(self.fleet)} agents connected in {time.monotonic() - started:.1f} s")
        o.progress(f"{len(self.fleet)} agents connected")
        await self._wait_registered()
        await self._deploy(stored["model"], stored["version"], [d for d, _, _ in self.devices])
        ok = await self.fleet.wait_for_version(stored["model"], stored["version"],
                                               timeout=60 + len(self.fleet) * 0.05)
        running = len(self.fleet.running(stored["model"], stored["version"]))
        self.report.setup_notes.append(
            f"rolled out {stored['model']}:{stored['version']} before the timeline: "
            f"{running}/{len(self.fleet)} active")
        if not ok:
            log.warning("only %d of %d devices activated the first model", running,
                        len(self.fleet))
        self.hostile = _HostilePublisher(self.broker_address, random.Random(s.seed + 1))
        await self.hostile.start()

    async def _wait_registered(self) -> None:
        assert self.client is not None
        ids = {d for d, _, _ in self.devices}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            known = {d["device_id"] for d in await asyncio.to_thread(self.client.list_devices)}
            if ids <= known:
                return
            await asyncio.sleep(0.2)
        raise ScenarioError("the controller did not see every device within 60 s")

    async def _deploy(self, model: str, version: int, devices: list[str]) -> None:
        assert self.client is not None
        await asyncio.to_thread(self.client.deploy, model, version, devices)
        for d in devices:
            self.latest[d] = (model, version)

    async def teardown(self) -> None:
        from simulator.demo import stop_process

        self.device_clock.skew_s = 0.0
        for task in list(self._background):
            task.cancel()
        if self.hostile is not None:
            with contextlib.suppress(Exception):
                await self.hostile.stop()
        if self.fleet is not None:
            with contextlib.suppress(Exception):
                await self.fleet.stop(drain_timeout=0)
        if self.proxy is not None:
            await self.proxy.stop()
        if self.client is not None:
            self.client.close()
        if self.controller_proc is not None:
            await asyncio.to_thread(stop_process, self.controller_proc)
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)
        logging.getLogger("edgewise").removeHandler(self._warnings)

    # -- the timeline ---------------------------------------------------------------------------------

    async def run(self) -> ScenarioReport:
        try:
            await self.setup()
            assert self.fleet is not None
            w = self.s.workload
            self.workload = Workload(self.fleet, load_dataset(self.s.dataset),
                                     rate_per_device=w.rate_per_device,
                                     feedback_delay_s=w.feedback_delay_s,
                                     feedback_coverage=w.feedback_coverage, seed=self.s.seed)
            cpu0 = sample_process()
            self.t0 = time.monotonic()
            self.t0_wall = time.time()
            self.workload.start()
            self.say(f"timeline starts: {len(self.fleet)} devices serving, "
                     f"{w.rate_per_device:g} predictions/s each")
            for event in self.s.events:
                delay = event.at - self.t()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    await self.apply(event)
                except ScenarioError:
                    raise
                except Exception as exc:  # an event that fails is reported, the run goes on
                    log.exception("event %d (%s) failed", event.index, event.action)
                    self.say(f"event #{event.index} {event.action} FAILED: {exc!r}")
            rest = self.s.duration_s - self.t()
            if rest > 0:
                await asyncio.sleep(rest)
            self.say("timeline ends; the workload stops, faults are lifted, the fleet settles")
            await self.workload.stop()
            await self.lift_faults()
            await self.settle()
            await self.observe_controller()
            await self.account()
            cpu1 = sample_process()
            self.report.resources = {"rss_mib": round(cpu1.rss_mib, 1),
                                     "cpu_s": round(cpu1.cpu_s - cpu0.cpu_s, 1)}
            self.report.duration_s = self.t()
            self.check()
        finally:
            await self.teardown()
        return self.report

    async def apply(self, e: Event) -> None:
        assert self.fleet is not None and self.workload is not None
        ids = self.targets[e.index]
        if e.action == "restart" and not e.selector.groups and not e.selector.labels and \
                not e.selector.devices:
            ids = sorted(self.fleet.killed)  # restart with no selection: whoever is dead
            what = "the killed ones"
        else:
            what = e.selector.describe()
        handler = getattr(self, f"do_{e.action}")
        await handler(e, ids, what)

    # Each handler below says what it really does.

    async def do_rollout(self, e: Event, ids: list[str], what: str) -> None:
        """Train a new version (the event's estimator/seed), register it, deploy it to the
        selected devices through the controller's REST API; report when they all run it."""
        assert self.client is not None and self.fleet is not None
        seed = e.param("seed")
        result = await asyncio.to_thread(train_model, self.s.model, e.param("estimator"),
                                         seed if seed is not None else self.s.model.seed + e.index)
        stored = await asyncio.to_thread(self.client.push_version, result.manifest,
                                         result.artifact)
        model, version = stored["model"], stored["version"]
        await self._deploy(model, version, ids)
        self.say(f"rollout of {model}:{version} ({result.report['estimator']}) to {len(ids)} "
                 f"devices ({what})")
        self.spawn(self._watch_rollout(model, version, ids, self.t()))

    async def _watch_rollout(self, model: str, version: int, ids: list[str], since: float) -> None:
        assert self.fleet is not None
        while True:
            agents = [self.fleet.agent(d) for d in ids]
            live = [a for a in agents if a.device_id not in self.fleet.killed]
            done = [a for a in live if a.active is not None and a.active.model == model
                    and a.active.version == version and a.state in SETTLED_STATES]
            if live and len(done) == len(live):
                self.say(f"{model}:{version} active on all {len(done)} live targets "
                         f"({self.t() - since:.1f} s after the deployment)")
                return
            await asyncio.sleep(0.25)

    async def do_disconnect(self, e: Event, ids: list[str], what: str) -> None:
        """``MqttLink.drop_connection()``: the agent's TCP socket is shut down, as a flaky link
        would; the broker publishes its last will (offline), the agent reconnects by itself."""
        assert self.fleet is not None
        dead = [d for d in ids if d in self.fleet.killed]
        ids = [d for d in ids if d not in self.fleet.killed]
        before = {d: self.fleet.agent(d).link.connect_count for d in ids}
        for d in ids:
            self.fleet.agent(d).link.drop_connection()
        self.say(f"disconnect {len(ids)} devices ({what})"
                 + (f"; {len(dead)} selected devices were dead already" if dead else ""))
        self.spawn(self._watch_reconnect(before, self.t(), "after the disconnect"))

    async def _watch_reconnect(self, before: dict[str, int], since: float, why: str,
                               timeout: float = 60.0) -> None:
        assert self.fleet is not None
        deadline = time.monotonic() + timeout
        agents = {d: self.fleet.agent(d) for d in before}
        back: list[str] = []
        while time.monotonic() < deadline:
            # an agent restarted meanwhile is a new object: connected counts as back
            back = [d for d, n in before.items() if self.fleet.agent(d).link.connected and (
                self.fleet.agent(d) is not agents[d] or agents[d].link.connect_count > n)]
            if len(back) == len(before):
                self.say(f"all {len(back)} reconnected {self.t() - since:.1f} s {why}")
                return
            await asyncio.sleep(0.1)
        self.say(f"only {len(back)}/{len(before)} reconnected within {timeout:.0f} s {why}")

    async def do_partition(self, e: Event, ids: list[str], what: str) -> None:
        """Link proxy: the devices' connections are closed and refused for ``duration_s``."""
        assert self.proxy is not None and self.fleet is not None
        for d in ids:
            self.proxy.set_fault(d, LinkFault(offline=True))
        self.say(f"partition: {len(ids)} devices ({what}) cut off for {e.param('duration_s')} s")
        self.spawn(self._end_partition(ids, e.param("duration_s")))

    async def _end_partition(self, ids: list[str], seconds: float) -> None:
        assert self.proxy is not None and self.fleet is not None
        await asyncio.sleep(seconds)
        before = {d: self.fleet.agent(d).link.connect_count for d in ids}
        for d in ids:
            self.proxy.set_fault(d, None)
        self.say(f"partition lifted for {len(ids)} devices")
        await self._watch_reconnect(before, self.t(), "after the partition was lifted")

    async def do_slow_link(self, e: Event, ids: list[str], what: str) -> None:
        """Link proxy: ``latency_s`` added to every byte each way, optionally paced to
        ``bandwidth_kbps``, for ``duration_s``."""
        fault = LinkFault(latency_s=e.param("latency_s"), bandwidth_kbps=e.param("bandwidth_kbps"))
        self._link_fault(ids, fault, e.param("duration_s"))
        bw = f", {fault.bandwidth_kbps:g} kbit/s" if fault.bandwidth_kbps else ""
        self.say(f"slow link on {len(ids)} devices ({what}): +{fault.latency_s:g} s each "
                 f"way{bw}, for {e.param('duration_s')} s")

    async def do_lossy_link(self, e: Event, ids: list[str], what: str) -> None:
        """Link proxy: with probability ``loss`` a forwarded read stalls for a retransmission
        timeout; with ``reset_every_s``, each device's connection is also reset about that
        often (at random), for ``duration_s``."""
        assert self.proxy is not None
        self._link_fault(ids, LinkFault(loss=e.param("loss")), e.param("duration_s"))
        every = e.param("reset_every_s")
        if every:
            self.spawn(self._resets(ids, every, e.param("duration_s")))
        self.say(f"lossy link on {len(ids)} devices ({what}): {e.param('loss'):.0%} stalls"
                 + (f", a reset every ~{every:g} s" if every else "")
                 + f", for {e.param('duration_s')} s")

    async def _resets(self, ids: list[str], every: float, seconds: float) -> None:
        assert self.proxy is not None
        end = time.monotonic() + seconds
        resets = 0
        while time.monotonic() < end:
            await asyncio.sleep(0.5)
            for d in ids:
                if self.rng.random() < 0.5 / every:
                    resets += self.proxy.cut(d)
        self.say(f"lossy link: {resets} connections reset")

    def _link_fault(self, ids: list[str], fault: LinkFault, seconds: float) -> None:
        assert self.proxy is not None
        for d in ids:
            self.proxy.set_fault(d, fault)

        async def lift() -> None:
            await asyncio.sleep(seconds)
            assert self.proxy is not None
            for d in ids:
                if self.proxy.fault(d) == fault:
                    self.proxy.set_fault(d, None)
            self.say(f"link fault lifted for {len(ids)} devices")

        self.spawn(lift())

    async def do_kill(self, e: Event, ids: list[str], what: str) -> None:
        """``EdgeAgent.kill()``: the socket is dropped without DISCONNECT (the broker publishes
        the last will), nothing is flushed; records still in memory are lost with the process,
        and counted here."""
        assert self.fleet is not None
        for d in ids:
            agent = self.fleet.agent(d)
            if d in self.fleet.killed:
                continue
            # the agent's in-memory records (not yet in its outbox) die with it
            self.unflushed[d] += agent.unflushed_records()
            self.fleet.kill(d)
        self.say(f"kill {len(ids)} agents ({what})")
        self.spawn(self._watch_offline(ids, self.t()))

    async def _watch_offline(self, ids: list[str], since: float) -> None:
        assert self.client is not None
        deadline = time.monotonic() + 30
        seen: set[str] = set()
        while time.monotonic() < deadline and len(seen) < len(ids):
            rows = await asyncio.to_thread(self.client.list_devices)
            seen = {r["device_id"] for r in rows if r["device_id"] in ids and not r.get("online")}
            await asyncio.sleep(0.25)
        self.say(f"controller saw {len(seen)}/{len(ids)} killed devices offline "
                 f"({self.t() - since:.1f} s after the kill, from their last will)")

    async def do_restart(self, e: Event, ids: list[str], what: str) -> None:
        """A new ``EdgeAgent`` on the same data directory (outbox, models, active.json), as a
        process restart would; it resumes the model it ran and sends what its outbox holds."""
        assert self.fleet is not None
        for d in ids:
            await self.fleet.restart(d)
        self.say(f"restart {len(ids)} agents ({what})")
        self.spawn(self._watch_restart(ids, self.t()))

    async def _watch_restart(self, ids: list[str], since: float) -> None:
        assert self.fleet is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            agents = [self.fleet.agent(d) for d in ids]
            if all(a.link.connected and a.runtime is not None for a in agents):
                versions = Counter(str(a.active) for a in agents)
                self.say(f"{len(ids)} restarted agents connected and serving "
                         f"{dict(versions)} ({self.t() - since:.1f} s after the restart)")
                return
            await asyncio.sleep(0.1)
        self.say("restarted agents not all connected and serving within 60 s")

    async def do_corrupt_chunks(self, e: Event, ids: list[str], what: str) -> None:
        """A hostile client floods the chunk topics of every artifact named in a desired-state
        message with random bytes (80% of the right length) for ``duration_s``."""
        assert self.hostile is not None
        self.hostile.flood(e.param("duration_s"), e.param("per_second"))
        self.say(f"corrupt chunks: a hostile publisher floods the chunk topics "
                 f"({e.param('per_second')}/s) for {e.param('duration_s')} s")

    async def do_full_disk(self, e: Event, ids: list[str], what: str) -> None:
        """The outbox is reopened with ``max_db_pages`` at its current size (the
        ``TelemetryOutbox`` hook): inserts that need a new page fail as on a full disk and the
        refused records are counted; reopened without the cap after ``duration_s``."""
        assert self.fleet is not None

        def dropped() -> int:
            assert self.fleet is not None
            return sum(a.outbox.stats().dropped_total for a in map(self.fleet.agent, ids)
                       if a.outbox is not None)

        for d in ids:
            self._reopen_outbox(self.fleet.agent(d), cap=True)
            self._full_disk.add(d)
        before = dropped()
        self.say(f"full disk on {len(ids)} devices ({what}) for {e.param('duration_s')} s")

        async def free() -> None:
            await asyncio.sleep(e.param("duration_s"))
            assert self.fleet is not None
            for agent in map(self.fleet.agent, ids):
                agent.flush()  # what the full outbox refuses now is counted with the rest
            refused = dropped() - before
            for d in ids:
                if d in self._full_disk:
                    self._reopen_outbox(self.fleet.agent(d), cap=False)
                    self._full_disk.discard(d)
            self.say(f"disk space back on {len(ids)} devices; {refused} records were refused "
                     "meanwhile and counted (SQLite reused the pages acknowledged rows freed "
                     "for the rest)")

        self.spawn(free())

    def _reopen_outbox(self, agent: EdgeAgent, *, cap: bool) -> None:
        old = agent.outbox
        if old is None:
            return  # killed
        agent.flush()
        path, max_records, overflow = old.path, old.max_records, old.overflow
        old.close()
        agent.outbox = TelemetryOutbox(path, max_records=max_records, overflow=overflow,
                                       max_db_pages=1 if cap else None)

    async def do_clock_skew(self, e: Event, ids: list[str], what: str) -> None:
        """Every simulated device's wall clock (the clock the fleet gives its agents) runs
        ``skew_s`` off the controller's; monotonic clocks (timeouts, windows) are not skewed."""
        self.device_clock.skew_s = float(e.param("skew_s"))
        self.say(f"clock skew: every device's clock is now {e.param('skew_s'):+g} s off the "
                 "controller's")

    async def do_broker_restart(self, e: Event, ids: list[str], what: str) -> None:
        """The Mosquitto the runner started is stopped (SIGTERM) and started again on the same
        port after ``down_s``: every device and the controller lose the broker."""
        if self.broker is None:
            raise ScenarioError("broker_restart needs the broker the runner starts itself")
        assert self.fleet is not None
        await asyncio.to_thread(self.broker.stop)
        self.say(f"broker stopped for {e.param('down_s')} s")
        await asyncio.sleep(e.param("down_s"))
        before = {a.device_id: a.link.connect_count for a in self.live}
        await asyncio.to_thread(self.broker.start)
        self.say("broker started again")
        self.spawn(self._watch_reconnect(before, self.t(), "after the broker came back",
                                         timeout=90))

    async def do_drift(self, e: Event, ids: list[str], what: str) -> None:
        """Through the workload: covariate shift (``sd`` standard deviations) or sensor offset
        (``offset``) added to ``features`` of the rows the devices are asked to predict, or a
        concept change (a share ``rate`` of the labels fed back disagree with the prediction);
        for ``duration_s`` or to the end."""
        assert self.workload is not None
        kind = e.param("kind")
        if kind == "concept_change":
            self.workload.change_concept(ids, rate=e.param("rate"))
            detail = f"{e.param('rate'):.0%} of labels changed"
        else:
            self.workload.shift_features(ids, e.param("features"), sd=e.param("sd"),
                                         offset=e.param("offset"))
            detail = f"features {e.param('features')} +{e.param('sd')} sd +{e.param('offset')}"
        self.say(f"drift ({kind}) on {len(ids)} devices ({what}): {detail}")
        seconds = e.param("duration_s")
        if seconds:
            async def end() -> None:
                await asyncio.sleep(seconds)
                assert self.workload is not None
                if kind == "concept_change":
                    self.workload.change_concept(ids, rate=0.0)
                else:
                    self.workload.shift_features(ids, e.param("features"), sd=0.0, offset=0.0)
                self.say(f"drift ({kind}) ends on {len(ids)} devices")

            self.spawn(end())

    # -- after the timeline ------------------------------------------------------------------------

    async def lift_faults(self) -> None:
        assert self.fleet is not None
        self.device_clock.skew_s = 0.0
        if self.proxy is not None:
            for d in list(self.proxy.faults):
                self.proxy.set_fault(d, None)
        for d in list(self._full_disk):
            self._reopen_outbox(self.fleet.agent(d), cap=False)
        self._full_disk.clear()
        if self.hostile is not None:
            self.hostile.flood(0, 1)

    async def settle(self) -> None:
        """Wait until every live agent is connected and has had every record it made during the
        timeline acknowledged by the controller."""
        assert self.fleet is not None and self.client is not None
        deadline = time.monotonic() + self.o.settle_timeout_s
        while time.monotonic() < deadline:
            if all(a.link.connected for a in self.live):
                break
            await asyncio.sleep(0.2)
        # acknowledged means committed at the controller: nothing more to wait for
        drained = await self.fleet.wait_delivered(max(1.0, deadline - time.monotonic()))
        if drained:
            self.say("fleet settled: every record made during the timeline acknowledged")
            return
        holding = [a for a in self.live if a.outbox is not None and a.outbox.stats().pending]
        self.say(f"fleet did NOT settle within {self.o.settle_timeout_s:g} s: "
                 f"{len(holding)} devices still hold records: " + ", ".join(
                     f"{a.device_id} ({a.outbox.stats().pending if a.outbox else 0} records, "
                     f"{'connected' if a.link.connected else 'disconnected'})"
                     for a in holding[:5]))

    async def observe_controller(self) -> None:
        assert self.client is not None and self.fleet is not None
        rows = await asyncio.to_thread(self.client.list_devices)
        ours = [r for r in rows if r["device_id"] in {d for d, _, _ in self.devices}]
        cv = self.report.controller_view
        cv["devices"] = len(ours)
        cv["online"] = sum(1 for r in ours if r.get("online"))
        cv["offline"] = sorted(r["device_id"] for r in ours if not r.get("online"))[:10]
        cv["versions"] = dict(Counter(f"{r.get('active_model')}:{r.get('active_version')}"
                                      for r in ours))
        cv["states"] = dict(Counter(str(r.get("state")) for r in ours))
        with contextlib.suppress(Exception):
            health = await asyncio.to_thread(self.client.health)
            cv["bridge"] = {k: v for k, v in health.get("bridge", {}).items() if v}
            cv["chunks"] = health.get("chunks", {})
        cv["alerts"] = await asyncio.to_thread(self._alerts)
        agents = self.fleet.agents
        versions = Counter(str(a.active) for a in self.live)
        self.report.end_state = {
            "live": len(self.live), "killed": len(self.fleet.killed),
            "connected": sum(1 for a in self.live if a.link.connected),
            # issue 4: a device that rolled back (its probation failed) failed its update too
            "failed": sum(1 for a in self.live if a.state in ("failed", "rolled_back")),
            "versions": dict(versions)}
        self.report.agent_counters = {
            "reconnects": sum(max(0, a.link.connect_count - 1) for a in agents),
            "restarts": self.fleet.restarts,
            "messages dropped (malformed/unexpected)": sum(
                sum(a.dropped_messages.values()) for a in agents),
            "handler errors": sum(a.link.handler_errors for a in agents)}
        self.report.agent_warnings = self._warnings.counts
        if self.workload is not None:
            self.report.workload = dict(self.workload.stats)

    def _alerts(self) -> dict[str, int]:
        """Alert kinds that fired during the run (needs the monitoring API; {} without it)."""
        with httpx.Client(base_url=self.url + "/api/v1", timeout=30) as http:
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
                if isinstance(ts, (int, float)) and self.t0_wall:
                    first[kind] = min(first.get(kind, float("inf")), ts - self.t0_wall)
            self.report.controller_view["alerts_first_fired_at_s"] = {
                k: round(v, 1) for k, v in sorted(first.items())}
            return dict(Counter(str(ev.get("kind")) for ev in fired))

    async def account(self) -> None:
        """Stop the agents cleanly, then compare each outbox file's counters with the
        controller's rows for that device."""
        assert self.fleet is not None and self.client is not None
        await self.fleet.stop(drain_timeout=5)
        accounts = []
        http = httpx.Client(base_url=self.url + "/api/v1", timeout=30)
        try:
            for agent in self.fleet.agents:
                path = agent.config.data_dir / "outbox.sqlite"
                try:
                    with TelemetryOutbox(path) as outbox:
                        st = outbox.stats()
                except OutboxError as exc:
                    self.say(f"cannot read the outbox of {agent.device_id}: {exc}")
                    continue
                r = await asyncio.to_thread(http.get, "/telemetry/count",
                                            params={"device_id": agent.device_id})
                stored = int(r.json()["count"]) if r.status_code == 200 else -1
                accounts.append(DeviceAccount(agent.device_id, st.last_seq, stored, st.pending,
                                              st.dropped_total, self.unflushed[agent.device_id]))
        finally:
            http.close()
        self.report.accounts = accounts

    def check(self) -> None:
        x, r = self.s.expect, self.report
        assert self.fleet is not None
        if x.lost is not None:
            r.checks.append(("telemetry lost", r.lost <= x.lost,
                             f"{r.lost} lost (expected at most {x.lost})"))
        if x.all_online:
            n = r.controller_view.get("online", 0)
            want = len(self.fleet) - len(self.fleet.killed)
            r.checks.append(("every live device online at the controller", n >= want,
                             f"{n}/{want}"))
        if x.all_on_latest:
            wrong = [a.device_id for a in self.live if a.device_id in self.latest and (
                a.active is None or (a.active.model, a.active.version) != self.latest[a.device_id])]
            r.checks.append(("every live device runs the last version sent to it", not wrong,
                             f"{len(wrong)} do not" + (f" ({wrong[:3]})" if wrong else "")))
        fired = r.controller_view.get("alerts", {})
        for kind in x.alerts:
            r.checks.append((f"alert {kind!r} fired", kind in fired,
                             f"fired: {fired or 'none'}"))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


async def run_scenario(scenario: Scenario, options: RunOptions) -> ScenarioReport:
    return await ScenarioRun(scenario, options).run()


def run_scenario_sync(scenario: Scenario, options: RunOptions) -> ScenarioReport:
    return asyncio.run(run_scenario(scenario, options))


def clean_workdir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
