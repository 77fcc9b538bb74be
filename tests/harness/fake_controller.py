"""Helpers for the bad-input tests: a real agent on the real broker, and the test acting as the
controller for it (answering artifact requests with chunks it may tamper with or withhold)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig
from edgewise_mqtt.link import BrokerAddress, MqttLink
from edgewise_wire import (
    Ack,
    ArtifactRef,
    Desired,
    Manifest,
    Reported,
    TelemetryBatch,
    decode,
    encode,
)
from edgewise_wire.request_messages import ArtifactRequest
from edgewise_wire.topics import (
    DeviceChannel,
    DeviceTopic,
    chunk_topic,
    device_topic,
    parse_topic,
)
from simulator.broker import BrokerProcess
from tests.harness.waiting import wait_for_async

# (chunk index, the good bytes, how many times this chunk was served before) -> what to send,
# or None to send nothing
ChunkTamper = Callable[[int, bytes, int], bytes | None]


@dataclass(frozen=True)
class Artifact:
    manifest: Manifest
    data: bytes


def unique_device_id(prefix: str = "bad") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"




class FakeController:
    """The test's side of one device's MQTT conversation: publishes desired states and garbage,
    answers ``art/req`` with chunks (through ``tamper`` if set), records ``reported`` and
    acknowledges telemetry batches as the real controller does."""

    def __init__(self, broker: BrokerAddress, device_id: str) -> None:
        self.device_id = device_id
        self.requests: list[ArtifactRequest] = []
        self.reported: list[Reported] = []
        self.batches: list[TelemetryBatch] = []
        self.tamper: ChunkTamper | None = None
        self.errors: list[str] = []
        self._artifacts: dict[str, tuple[ArtifactRef, bytes]] = {}
        self._served: Counter[tuple[str, int]] = Counter()
        self.link = MqttLink(f"ew-test-ctl-{device_id}", broker, on_message=self._on_message)

    def topic(self, channel: DeviceChannel) -> str:
        return device_topic(self.device_id, channel)

    def serve(self, ref: ArtifactRef, data: bytes) -> None:
        """Answer requests for ``ref.sha256`` with slices of ``data`` (even if they do not
        hash to it: that is how a wrong manifest is tested)."""
        self._artifacts[ref.sha256] = (ref, data)

    async def start(self) -> None:
        await self.link.start(timeout=10)
        await self.link.subscribe_and_wait(self.topic(DeviceChannel.ARTIFACT_REQUEST), timeout=10)
        await self.link.subscribe_and_wait(self.topic(DeviceChannel.REPORTED), timeout=10)
        await self.link.subscribe_and_wait(self.topic(DeviceChannel.TELEMETRY), timeout=10)

    async def stop(self) -> None:
        # leave nothing retained behind on the shared session broker
        for channel in (DeviceChannel.DESIRED, DeviceChannel.REPORTED, DeviceChannel.PRESENCE):
            with contextlib.suppress(Exception):
                await self.link.publish_and_wait(self.topic(channel), b"", retain=True, timeout=5)
        await self.link.stop()

    async def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        await self.link.publish_and_wait(topic, payload, retain=retain, timeout=10)

    async def publish_desired(self, manifest: Manifest | None, deployment_id: str = "dep-test",
                              retain: bool = False) -> None:
        await self.publish(self.topic(DeviceChannel.DESIRED),
                           encode(Desired(deployment_id, manifest)), retain=retain)

    @property
    def last_reported(self) -> Reported | None:
        return self.reported[-1] if self.reported else None

    def _on_message(self, topic: str, payload: bytes) -> None:
        parsed = parse_topic(topic)
        assert isinstance(parsed, DeviceTopic)
        if parsed.channel is DeviceChannel.REPORTED:
            if payload:  # an empty payload is our own clean-up of the retained message
                self.reported.append(decode(payload, Reported))
            return
        if parsed.channel is DeviceChannel.TELEMETRY:
            batch = decode(payload, TelemetryBatch)
            self.batches.append(batch)
            self.link.publish(self.topic(DeviceChannel.ACK),
                              encode(Ack(batch.first_seq, batch.last_seq,
                                         batch.epoch if batch.epoch is not None else 0)))
            return
        if parsed.channel is not DeviceChannel.ARTIFACT_REQUEST:
            return
        try:
            request = decode(payload, ArtifactRequest)
        except Exception as exc:  # the agent sent something wrong: the test must notice
            self.errors.append(f"agent sent a bad art/req: {exc}")
            return
        self.requests.append(request)
        entry = self._artifacts.get(request.sha256)
        if entry is None:
            return
        ref, data = entry
        for start, end in request.ranges:
            for index in range(start, end):
                offset = index * ref.chunk_size
                good = data[offset:offset + ref.chunk_length(index)]
                served = self._served[(ref.sha256, index)]
                self._served[(ref.sha256, index)] += 1
                chunk = self.tamper(index, good, served) if self.tamper else good
                if chunk is not None:
                    self.link.publish(chunk_topic(ref.sha256, index), chunk)


def agent_config(broker: BrokerProcess, data_dir: Path, device_id: str,
                 **overrides: Any) -> AgentConfig:
    values: dict[str, Any] = {"chunk_repair_interval_s": 0.4, "telemetry_flush_interval_s": 0.05}
    values.update(overrides)
    return AgentConfig(device_id=device_id, data_dir=data_dir, broker=broker.address, **values)


@contextlib.asynccontextmanager
async def agent_and_controller(broker: BrokerProcess, data_dir: Path, *,
                               device_id: str | None = None,
                               before_start: Callable[[FakeController], Awaitable[None]]
                               | None = None,
                               **overrides: Any) -> AsyncIterator[tuple[EdgeAgent, FakeController]]:
    """One started EdgeAgent (own data dir, unique id) and the FakeController talking to it."""
    device_id = device_id or unique_device_id()
    controller = FakeController(broker.address, device_id)
    await controller.start()
    if before_start is not None:
        await before_start(controller)
    agent = EdgeAgent(agent_config(broker, data_dir, device_id, **overrides))
    try:
        await asyncio.wait_for(agent.start(), 15)
        await wait_for_async(lambda: controller.last_reported is not None, 10,
                         "the agent's first reported state")
        yield agent, controller
    finally:
        await agent.stop()
        await controller.stop()


async def activate(agent: EdgeAgent, controller: FakeController, artifact: Artifact,
                   timeout: float = 15.0) -> None:
    """Roll ``artifact`` out to the agent the way the controller would, and wait until active."""
    manifest = artifact.manifest
    controller.serve(manifest.artifact, artifact.data)
    await controller.publish_desired(manifest, deployment_id=f"dep-{manifest.version}")
    await wait_for_async(
        lambda: agent.state == "active" and agent.active is not None
        and agent.active.sha256 == manifest.artifact.sha256,
        timeout, f"activation of {manifest.model}:{manifest.version} "
                 f"(state {agent.state}, last_error {agent.last_error})")


def model_files(agent: EdgeAgent) -> set[str]:
    models = agent.config.data_dir / "models"
    return {p.name for p in models.iterdir()} if models.exists() else set()


def partial_files(agent: EdgeAgent) -> set[str]:
    download = agent.config.data_dir / "download"
    return {p.name for p in download.iterdir()} if download.exists() else set()


def assert_agent_healthy(agent: EdgeAgent) -> None:
    """Still connected on its first connection, and no handler raised past the protocol layer
    (such an exception is swallowed by MqttLink: neither counted as a drop nor acted upon)."""
    assert agent.link.connected, "the agent lost its broker connection"
    assert agent.link.connect_count == 1, "the agent had to reconnect"
    assert agent.link.handler_errors == 0, (
        "a message made the agent's handler raise instead of being dropped and counted; "
        "see the 'handler failed' traceback in the log")
