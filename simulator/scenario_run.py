"""Run a scenario: a broker, a controller, a simulated fleet, a workload and a timeline of faults,
then an account of what happened, what the controller saw and what was lost.

    report = run_scenario_sync(load_scenario(Path("simulator/scenarios/flaky-site.toml")),
                               RunOptions(workdir=Path("/tmp/scenario")))
    print(render(report))

The runner starts Mosquitto and a controller process of its own unless it is given a broker and a
controller URL. What each event really does is written next to its handler in
:mod:`simulator.scenario_faults` and in docs/simulator.md; what the run reports is gathered by
:mod:`simulator.scenario_observation`.

One module on purpose, about 430 lines: setting a run up, driving its timeline, letting it
settle and tearing it down share the run's state; the faults and the report live beside it.
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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.cli.client import ControllerClient
from edge_agent.agent import EdgeAgent
from edgewise_mqtt.link import BrokerAddress, MqttLink
from edgewise_wire import Desired, ProtocolError, decode
from edgewise_wire.manifest import ArtifactRef
from edgewise_wire.topics import ROOT, DeviceChannel, chunk_topic, device_wildcard
from simulator.broker import BrokerProcess, mosquitto_broker
from simulator.fleet import DeviceGroup, SimulatedFleet, sample_process
from simulator.keys import controller_trusted_keys
from simulator.scenario import (
    PROXIED_ACTIONS,
    Event,
    Scenario,
    ScenarioError,
    select,
)
from simulator.scenario_faults import FAULTS, reopen_outbox
from simulator.scenario_links import LinkProxy
from simulator.scenario_models import train_model
from simulator.scenario_observation import account, check, observe_controller
from simulator.scenario_report import ScenarioReport
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

    def __init__(self, broker: BrokerAddress, rng: random.Random, *, root: str = ROOT) -> None:
        self.root = root
        self.refs: dict[str, ArtifactRef] = {}
        self.sent = 0
        self._rng = rng
        self._until = 0.0
        self._rate = 0.0
        self._task: asyncio.Task[None] | None = None
        self.link = MqttLink(f"ew-hostile-{os.urandom(3).hex()}", broker,
                             on_message=self._on_message,
                             on_connect=lambda: self.link.subscribe(
                                 device_wildcard(DeviceChannel.DESIRED, root=root)))

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
                self.link.publish(chunk_topic(ref.sha256, index, root=self.root), os.urandom(length))
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
        self._watches: set[asyncio.Task[Any]] = set()  # rollouts awaited by settle()
        self._full_disk: set[str] = set()
        self.device_clock = SkewedClock()

    def t(self) -> float:
        return time.monotonic() - self.t0 if self.t0 else 0.0

    def say(self, text: str) -> None:
        self.report.note(self.t(), text)
        self.o.progress(f"t={self.t():7.2f}s  {text}")

    def spawn(self, coro: Any, *, settle_awaits: bool = False) -> None:
        """Run ``coro`` beside the timeline; with ``settle_awaits`` the run's settling waits for
        it too (within the settle timeout), so a rollout deployed late still reports."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        if settle_awaits:
            self._watches.add(task)
            task.add_done_callback(self._watches.discard)

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

        # with a controller of its own, the agents trust its signing keys (enforce
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
            await observe_controller(self)
            await account(self)
            cpu1 = sample_process()
            self.report.resources = {"rss_mib": round(cpu1.rss_mib, 1),
                                     "cpu_s": round(cpu1.cpu_s - cpu0.cpu_s, 1)}
            self.report.duration_s = self.t()
            check(self)
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
        await FAULTS[e.action](self, e, ids, what)



    # -- after the timeline ------------------------------------------------------------------------

    async def lift_faults(self) -> None:
        assert self.fleet is not None
        self.device_clock.skew_s = 0.0
        if self.proxy is not None:
            for d in list(self.proxy.faults):
                self.proxy.set_fault(d, None)
        for d in list(self._full_disk):
            reopen_outbox(self, self.fleet.agent(d), cap=False)
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
        if self._watches:  # a rollout still converging (a loaded machine): it reports when done
            await asyncio.wait(set(self._watches), timeout=max(0.1, deadline - time.monotonic()))
        if drained:
            self.say("fleet settled: every record made during the timeline acknowledged")
            return
        holding = [a for a in self.live if a.outbox is not None and a.outbox.stats().pending]
        self.say(f"fleet did NOT settle within {self.o.settle_timeout_s:g} s: "
                 f"{len(holding)} devices still hold records: " + ", ".join(
                     f"{a.device_id} ({a.outbox.stats().pending if a.outbox else 0} records, "
                     f"{'connected' if a.link.connected else 'disconnected'})"
                     for a in holding[:5]))


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
