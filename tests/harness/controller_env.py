"""Helpers for the rollout tests: a controller process on a broker of the test's own, a recorder
of every desired state the broker carries, the CLI as a subprocess, and polling with timeouts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.cli.client import ControllerClient, ControllerClientError
from edgewise_mqtt.link import BrokerAddress, MqttLink
from edgewise_wire import Desired, decode
from edgewise_wire.topics import DeviceChannel, DeviceTopic, device_wildcard, parse_topic
from simulator.broker import BrokerProcess, free_port
from simulator.demo import start_controller, stop_process
from tests.harness.paths import REPO_ROOT
from tests.harness.waiting import wait_for_async

ROOT = REPO_ROOT


@dataclass(frozen=True)
class Sent:
    device_id: str
    deployment_id: str
    model: str | None
    version: int | None


@dataclass
class DesiredRecorder:
    """Subscribes to every device's ``desired`` topic and keeps what the broker delivers."""

    broker: BrokerAddress
    sent: list[Sent] = field(default_factory=list)

    async def start(self) -> None:
        self.link = MqttLink(f"ew-test-recorder-{os.getpid()}", self.broker,
                             on_message=self._on_message)
        await self.link.start(timeout=10)
        await self.link.subscribe_and_wait(device_wildcard(DeviceChannel.DESIRED), timeout=10)

    async def stop(self) -> None:
        await self.link.stop()

    def _on_message(self, topic: str, payload: bytes) -> None:
        parsed = parse_topic(topic)
        assert isinstance(parsed, DeviceTopic)
        desired = decode(payload, Desired)
        m = desired.manifest
        self.sent.append(Sent(parsed.device_id, desired.deployment_id,
                              m.model if m else None, m.version if m else None))

    def devices_sent(self, model: str | None, version: int | None) -> set[str]:
        return {s.device_id for s in self.sent if (s.model, s.version) == (model, version)}


class ControllerEnv:
    """A real `edgewise controller serve` process on this test's broker and data directory."""

    def __init__(self, broker: BrokerProcess, workdir: Path) -> None:
        self.broker = broker
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.client: ControllerClient

    def start(self) -> None:
        self.proc, self.url = start_controller(self.workdir / "controller", self.broker,
                                               port=self.port)
        self.client = ControllerClient(self.url, timeout=10.0)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def push(self, result: Any) -> int:
        return int(self.client.push_version(result.manifest, result.artifact)["version"])

    def log(self) -> str:
        path = self.workdir / "controller" / "controller.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def create(self, **spec: Any) -> dict[str, Any]:
        return self.client.create_rollout(spec)

    def view(self, ref: int | str) -> dict[str, Any]:
        return self.client.rollout(str(ref))




async def wait_status(env: ControllerEnv, ref: int | str, statuses: set[str],
                      timeout: float) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        nonlocal last
        try:
            last = env.view(ref)
        except ControllerClientError:
            return None  # restarting
        return last if last["status"] in statuses else None

    try:
        return await wait_for_async(check, timeout, f"rollout {ref} to be {sorted(statuses)}", interval=0.2, in_thread=True)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last view: status {last.get('status')}, "
                             f"reasons {last.get('reasons', [])[-3:]}, gates {last.get('gates')}"
                             f"\ncontroller log:\n{env.log()}") from None


async def wait_registered(env: ControllerEnv, device_ids: set[str], timeout: float = 30) -> None:
    await wait_for_async(lambda: device_ids <= {d["device_id"] for d in env.client.devices()
                                          if d.get("seen", True)},
                   timeout, f"{len(device_ids)} devices to register", interval=0.2, in_thread=True)


async def run_cli(url: str, *args: str, timeout: float = 120) -> tuple[int, str]:
    """`edgewise --controller URL ARGS...` in its own process; (exit code, stdout+stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.app.cli", "--controller", url, *args, cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")
