"""Many real agents in one process, all on one asyncio loop.

Each virtual device is an unmodified ``EdgeAgent`` with its own data directory, its own SQLite
outbox and its own MQTT connection: the simulator tests the code that ships, not a model of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig
from edge_agent.mqtt_link import BrokerAddress

log = logging.getLogger("edgewise.simulator")

LabelFn = Callable[[int], dict[str, str]]


def default_labels(index: int) -> dict[str, str]:
    sites = ("berlin", "lisbon", "oslo")
    return {"site": sites[index % len(sites)], "hw": "pi4" if index % 4 else "pi5"}


class SimulatedFleet:
    def __init__(self, broker: BrokerAddress, size: int, data_root: Path, *,
                 prefix: str = "sim", labels: LabelFn = default_labels,
                 **config_overrides: Any) -> None:
        self.broker = broker
        self.data_root = data_root
        self.agents: list[EdgeAgent] = []
        for i in range(size):
            device_id = f"{prefix}-{i:04d}"
            config = AgentConfig(device_id=device_id, data_dir=data_root / device_id,
                                 broker=broker, labels=labels(i), **config_overrides)
            self.agents.append(EdgeAgent(config))

    def __len__(self) -> int:
        return len(self.agents)

    def agent(self, device_id: str) -> EdgeAgent:
        return next(a for a in self.agents if a.device_id == device_id)

    async def start(self, concurrency: int = 100) -> None:
        """Connect every agent; at most ``concurrency`` handshakes at once spare the broker."""
        gate = asyncio.Semaphore(concurrency)

        async def start_one(agent: EdgeAgent) -> None:
            async with gate:
                await agent.start()

        await asyncio.gather(*(start_one(a) for a in self.agents))
        log.info("fleet of %d agents connected to %s", len(self.agents), self.broker)

    async def stop(self, drain_timeout: float = 10.0) -> None:
        await asyncio.gather(*(a.stop(drain_timeout=drain_timeout) for a in self.agents))

    def running(self, model: str, version: int) -> list[EdgeAgent]:
        return [a for a in self.agents if a.active is not None and a.active.model == model
                and a.active.version == version and a.state == "active"]

    async def wait_for_version(self, model: str, version: int, timeout: float = 60.0,
                               progress: Callable[[int, int], None] | None = None) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            done = len(self.running(model, version))
            if progress:
                progress(done, len(self.agents))
            if done == len(self.agents):
                return True
            await asyncio.sleep(0.2)
        return False

    async def wait_drained(self, timeout: float = 30.0) -> bool:
        """Wait until every agent's outbox is empty (all telemetry acknowledged)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            for agent in self.agents:
                agent.flush()
            if all(a.outbox is not None and a.outbox.stats().pending == 0 for a in self.agents):
                return True
            await asyncio.sleep(0.2)
        return False
