"""Many real agents in one process, all on one asyncio loop.

Each virtual device is an unmodified ``EdgeAgent`` with its own data directory, its own SQLite
outbox and its own MQTT connection: the simulator tests the code that ships, not a model of it.

A thousand agents hold about five file descriptors each (the MQTT socket, the outbox database,
its WAL and shared-memory files, a partial download), so :meth:`SimulatedFleet.start` raises the
process's soft ``RLIMIT_NOFILE`` to what the fleet needs, up to the hard limit, and says what to
do when the hard limit is too low. Agents connect a bounded number at a time, so a broker is not
hit by a thousand handshakes at once.

The fleet owns what its agents share: one small-I/O thread pool for their update paths
(:mod:`edge_agent.small_io`; a thousand agents share four threads, as a process of them always
did), created with the fleet and shut down by :meth:`SimulatedFleet.stop`, and the wall clock
they read (``clock``, ``time.time`` unless the scenario runner skews it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig
from edge_agent.small_io import small_io_executor
from edgewise_mqtt.link import BrokerAddress
from simulator.boards import SimulatedBoard

log = logging.getLogger("edgewise.simulator")

LabelFn = Callable[[int], dict[str, str]]
Clock = Callable[[], float]
Progress = Callable[[int, int], None]

# descriptors one agent may hold at once: socket, outbox db + -wal + -shm, a partial download,
# and a model file being read; plus room for the rest of the process
FDS_PER_AGENT = 6
FDS_RESERVED = 256
# the agent states in which its active model is the one it runs at rest
SETTLED_STATES = ("active", "rolled_back")


class FleetError(RuntimeError):
    """The fleet cannot run as asked; the message says what to change."""


def default_labels(index: int) -> dict[str, str]:
    sites = ("berlin", "lisbon", "oslo")
    return {"site": sites[index % len(sites)], "hw": "pi4" if index % 4 else "pi5"}


@dataclass(frozen=True)
class DeviceGroup:
    """``count`` devices that share labels, a device class and agent settings."""

    name: str
    count: int
    labels: dict[str, str] = field(default_factory=dict)
    device_class: str = "generic"
    config: dict[str, Any] = field(default_factory=dict)  # AgentConfig fields to override


def raise_open_file_limit(agents: int) -> int:
    """Raise the soft open-file limit to what ``agents`` agents need; return the new limit.

    Raises FleetError when even the hard limit is too low (only root can raise that).
    """
    needed = agents * FDS_PER_AGENT + FDS_RESERVED
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise FleetError(
                f"{agents} agents need about {needed} open files but this process may open at "
                f"most {hard} (hard limit); raise it (`ulimit -Hn {needed}` as root, or "
                f"LimitNOFILE={needed} in a systemd unit) or simulate fewer devices")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        log.info("raised the open-file limit from %d to %d for %d agents", soft, needed, agents)
        return needed
    return int(soft)


@dataclass(frozen=True)
class ProcessSample:
    """CPU and memory of a process at one moment (Linux /proc)."""

    at: float  # time.monotonic()
    cpu_s: float  # user + system CPU seconds since the process started, all threads
    rss_mib: float
    fds: int

    def cpu_percent_since(self, earlier: ProcessSample) -> float:
        """Average CPU use between two samples, in percent of one core."""
        wall = self.at - earlier.at
        return 100.0 * (self.cpu_s - earlier.cpu_s) / wall if wall > 0 else 0.0


def sample_process(pid: int | str = "self") -> ProcessSample:
    """Read ``/proc/PID``: CPU seconds (utime + stime), resident set, open descriptors."""
    base = Path("/proc") / str(pid)
    stat = (base / "stat").read_text()
    fields_ = stat[stat.rindex(")") + 2:].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields_[11]) + int(fields_[12])) / ticks  # utime, stime (fields 14, 15)
    rss_kib = 0
    for line in (base / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
            break
    try:
        fds = len(os.listdir(base / "fd"))
    except OSError:
        fds = -1
    return ProcessSample(time.monotonic(), cpu, rss_kib / 1024.0, fds)


class SimulatedFleet:
    """``trusted_keys``: PEM texts (or files) of the manifest-signing keys every agent
    trusts: the agents then act only on desired states signed by one of them (enforce mode;
    ``simulator.keys.controller_trusted_keys`` reads a controller's). Empty: development mode."""

    def __init__(self, broker: BrokerAddress, size: int, data_root: Path, *,
                 prefix: str = "sim", labels: LabelFn = default_labels,
                 trusted_keys: Sequence[str] = (), clock: Clock = time.time,
                 **config_overrides: Any) -> None:
        if trusted_keys:
            config_overrides["trusted_keys"] = tuple(trusted_keys)
        configs = [AgentConfig(device_id=f"{prefix}-{i:04d}", data_dir=data_root / f"{prefix}-{i:04d}",
                               broker=broker, labels=labels(i), **config_overrides)
                   for i in range(size)]
        self._setup(broker, data_root, configs, clock)

    @classmethod
    def from_groups(cls, broker: BrokerAddress, groups: Sequence[DeviceGroup], data_root: Path,
                    *, prefix: str = "sim",
                    broker_for: Callable[[str], BrokerAddress] | None = None,
                    trusted_keys: Sequence[str] = (), clock: Clock = time.time,
                    **config_overrides: Any) -> SimulatedFleet:
        """Devices named ``{prefix}-{group}-{NNNN}``, each group with its labels and settings
        (a group's ``config`` wins over ``config_overrides``). ``broker_for(device_id)`` may
        send some devices elsewhere (e.g. through a link proxy)."""
        if trusted_keys:
            config_overrides["trusted_keys"] = tuple(trusted_keys)
        configs = []
        for group in groups:
            for i in range(group.count):
                device_id = f"{prefix}-{group.name}-{i:04d}"
                settings = {**config_overrides, **group.config}
                configs.append(AgentConfig(
                    device_id=device_id, data_dir=data_root / device_id,
                    broker=broker_for(device_id) if broker_for else broker,
                    labels=dict(group.labels), device_class=group.device_class, **settings))
        fleet = cls.__new__(cls)
        fleet._setup(broker, data_root, configs, clock)
        return fleet

    def _setup(self, broker: BrokerAddress, data_root: Path, configs: Iterable[AgentConfig],
               clock: Clock) -> None:
        self.broker = broker
        self.data_root = data_root
        self.clock = clock
        self.small_io = small_io_executor()
        configs = list(configs)
        # each device's hardware, kept across its agent's restarts
        self.boards = {c.device_id: SimulatedBoard(c.device_id) for c in configs}
        self.agents: list[EdgeAgent] = [self._new_agent(c) for c in configs]
        self._index = {a.device_id: i for i, a in enumerate(self.agents)}
        self.killed: set[str] = set()
        self.restarts = 0

    def _new_agent(self, config: AgentConfig) -> EdgeAgent:
        return EdgeAgent(config, clock=self.clock, small_io=self.small_io,
                         health_sources=self.boards[config.device_id])

    def __len__(self) -> int:
        return len(self.agents)

    def agent(self, device_id: str) -> EdgeAgent:
        try:
            return self.agents[self._index[device_id]]
        except KeyError:
            raise KeyError(f"no simulated device {device_id!r}") from None

    async def start(self, concurrency: int = 100, progress: Progress | None = None,
                    connect_timeout: float = 60.0) -> None:
        """Connect every agent, at most ``concurrency`` handshakes at once.

        Raises FleetError if some agents did not connect within ``connect_timeout`` seconds
        (they keep retrying in the background; :meth:`stop` ends them).
        """
        raise_open_file_limit(len(self.agents))
        gate = asyncio.Semaphore(concurrency)
        done = [0]
        started = time.monotonic()

        async def start_one(agent: EdgeAgent) -> None:
            async with gate:
                await agent.start(wait_connected=False)
                await agent.link.wait_connected(connect_timeout)
            done[0] += 1
            if progress is not None:
                progress(done[0], len(self.agents))

        results = await asyncio.gather(*(start_one(a) for a in self.agents),
                                       return_exceptions=True)
        failed = [(a, r) for a, r in zip(self.agents, results, strict=True)
                  if isinstance(r, BaseException)]
        if failed:
            agent, error = failed[0]
            # a time-out says little; the link knows why its last attempt failed
            why = agent.link.last_error if isinstance(error, TimeoutError) else None
            raise FleetError(
                f"{len(failed)} of {len(self.agents)} agents did not connect to {self.broker} "
                f"within {connect_timeout:g} s (first: {agent.device_id}: {why or repr(error)}); "
                f"is the broker up, and does it allow {len(self.agents)} connections "
                "(max_connections)?")
        log.info("fleet of %d agents connected to %s in %.1f s", len(self.agents), self.broker,
                 time.monotonic() - started)

    async def stop(self, drain_timeout: float = 10.0) -> None:
        await asyncio.gather(*(a.stop(drain_timeout=drain_timeout) for a in self.agents
                               if a.device_id not in self.killed))
        # a journal save still running finishes in its thread; nothing new is queued
        self.small_io.shutdown(wait=False)

    # -- faults ----------------------------------------------------------------------------------

    def kill(self, device_id: str) -> EdgeAgent:
        """Crash one agent: no flush, no goodbye; the broker publishes its last will."""
        agent = self.agent(device_id)
        agent.kill()
        self.killed.add(device_id)
        return agent

    async def restart(self, device_id: str, *, wait_connected: bool = False) -> EdgeAgent:
        """Start a new agent process-equivalent on the killed (or stopped) one's data directory."""
        old = self.agent(device_id)
        if device_id not in self.killed:
            await old.stop()
        agent = self._new_agent(old.config)
        self.agents[self._index[device_id]] = agent
        self.killed.discard(device_id)
        self.restarts += 1
        await agent.start(wait_connected=wait_connected)
        return agent

    # -- waiting -----------------------------------------------------------------------------------

    def running(self, model: str, version: int) -> list[EdgeAgent]:
        """Agents at rest on ``model:version``: committed (``active``), or rolled back onto it
        (a revert or downgrade from the previous slot ends in ``rolled_back``); an agent still
        in probation with it does not count yet."""
        return [a for a in self.agents if a.active is not None and a.active.model == model
                and a.active.version == version and a.state in SETTLED_STATES]

    async def wait_for_version(self, model: str, version: int, timeout: float = 60.0,
                               progress: Progress | None = None, poll_s: float = 0.2) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            done = len(self.running(model, version))
            if progress:
                progress(done, len(self.agents))
            if done == len(self.agents):
                return True
            await asyncio.sleep(poll_s)
        return False

    async def wait_delivered(self, timeout: float = 30.0) -> bool:
        """Wait until every live agent has had acknowledged every record it held when the wait
        began (records made meanwhile, e.g. periodic metrics windows, need not be)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        live = [a for a in self.agents if a.device_id not in self.killed]
        targets: dict[str, int] = {}
        for agent in live:
            agent.flush()
            if agent.outbox is not None:
                targets[agent.device_id] = agent.outbox.stats().last_seq
        while loop.time() < deadline:
            waiting = 0
            for agent in live:
                outbox = agent.outbox
                if outbox is None or agent.device_id not in targets:
                    continue
                oldest = outbox.next_batch(1)
                if oldest and oldest[0]["seq"] <= targets[agent.device_id]:
                    waiting += 1
            if not waiting:
                return True
            await asyncio.sleep(0.2)
        return False

    async def wait_drained(self, timeout: float = 30.0) -> bool:
        """Wait until every live agent's outbox is empty (all telemetry acknowledged)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        live = [a for a in self.agents if a.device_id not in self.killed]
        while loop.time() < deadline:
            for agent in live:
                agent.flush()
            if all(a.outbox is not None and a.outbox.stats().pending == 0 for a in live):
                return True
            await asyncio.sleep(0.2)
        return False
