"""What the agent-update end-to-end tests share: devices that each run a real agent daemon under a
real ``edgewise-agent-launcher`` (prepared slots, archives to stage, the launcher's status), and
a fleet of such devices trusting a real controller's signing key.

Each slot's ``bin/edgewise-agent`` records its version in the launcher root's ``started`` file and
runs this checkout's daemon, as a device's virtualenv would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from controller.security.signing_keys import SigningKeys
from edge_agent import __version__
from simulator.broker import BrokerProcess
from tests.harness.agents import AgentProcess, unique_device_id
from tests.harness.controller_env import ControllerEnv, run_cli
from tests.harness.paths import REPO_ROOT
from tests.harness.waiting import wait_for

PROBATION_S = 20.0  # generous: a Python agent may take seconds to start on a busy machine


def agent_script(version: str, root: Path, extra: str = "") -> str:
    return (f"#!/bin/sh\necho {version} >> {root}/started\n"
            f"exec {sys.executable} -m edge_agent.daemon \"$@\" {extra}\n")


def make_slot(directory: Path, script: str) -> None:
    (directory / "bin").mkdir(parents=True)
    command = directory / "bin" / "edgewise-agent"
    command.write_text(script)
    command.chmod(0o755)


def make_archive(tmp: Path, script: str) -> tuple[Path, str]:
    archive = tmp / f"agent-{hashlib.sha256(script.encode()).hexdigest()[:8]}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("bin/edgewise-agent")
        data = script.encode()
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


class Launcher:
    def __init__(self, root: Path, agent: AgentProcess) -> None:
        self.root = root
        self.agent = agent
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root.parent / "launcher.log"

    def start(self, pause_in: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k != "EDGEWISE_LAUNCHER_PAUSE_IN"}
        if pause_in:
            env["EDGEWISE_LAUNCHER_PAUSE_IN"] = pause_in
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge_agent.launcher.main", "run", "--root",
                 str(self.root), "--probation-s", str(PROBATION_S), "--health-url",
                 f"http://127.0.0.1:{self.agent.http_port}/v1/health", "--",
                 "--config", str(self.agent.config_path)],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env,
                start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the launcher and everything it started (its session)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def stage(self, archive: Path, sha: str, version: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "edge_agent.launcher.main", "stage", "--root", str(self.root),
             str(archive), "--sha256", sha, "--version", version],
            capture_output=True, text=True, cwd=REPO_ROOT, check=False)
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout))

    def status(self) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "edge_agent.launcher.main", "status", "--root", str(self.root)],
            capture_output=True, text=True, cwd=REPO_ROOT, check=True)
        return dict(json.loads(out.stdout))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def started(self) -> list[str]:
        path = self.root / "started"
        return path.read_text().split() if path.exists() else []


def new_launcher(home: Path, device_id: str, broker: BrokerProcess,
                 trusted_keys: list[str] | None = None) -> Launcher:
    """A device at ``home`` whose slot ``a`` holds agent "v1"; nothing is started yet."""
    agent = AgentProcess(home, device_id, broker.address, None, trusted_keys=trusted_keys or [])
    root = home / "agent-slots"
    make_slot(root / "slots" / "a", agent_script("v1", root))
    return Launcher(root, agent)


def agent_health(launcher: Launcher) -> dict[str, Any]:
    """The agent's local health view, or {} while it is not answering."""
    try:
        body = httpx.get(f"http://127.0.0.1:{launcher.agent.http_port}/v1/health",
                         timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def connected(agent: AgentProcess) -> bool:
    try:
        return bool(httpx.get(f"http://127.0.0.1:{agent.http_port}/v1/health",
                              timeout=2).json().get("connected"))
    except (httpx.HTTPError, ValueError):
        return False


def agent_update(launcher: Launcher) -> dict[str, Any] | None:
    update = agent_health(launcher).get("agent_update")
    return update if isinstance(update, dict) else None


def wait_committed(launcher: Launcher, slot: str, what: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        status = launcher.status()
        ok = status["phase"] == "committed" and status["good"] == slot \
            and status["current"] == slot
        return status if ok and connected(launcher.agent) else None

    return wait_for(done, 120, lambda: f"{what}; launcher log:\n{launcher.log_text()[-3000:]}")


def reported_version(env: ControllerEnv, device_id: str) -> str | None:
    try:
        return str(env.client.device(device_id).get("agent_version") or "")
    except Exception:  # restarting or not registered yet
        return None


def cli(env: ControllerEnv, *args: str) -> str:
    code, out = asyncio.run(run_cli(env.url, *args))
    assert code == 0, out
    return out


def push_and_deploy(env: ControllerEnv, launcher: Launcher, archive: Path, version: str) -> None:
    cli(env, "agent", "push", str(archive), "--version", version, "--json")
    cli(env, "agent", "deploy", version, "--device", launcher.agent.device_id, "--json")


@contextlib.contextmanager
def trusting_fleet(tmp_path: Path, broker: BrokerProcess, prefix: str,
                   count: int = 1) -> Iterator[tuple[ControllerEnv, dict[str, Launcher]]]:
    """A controller and ``count`` devices whose agents trust its signing key, each running
    agent "v1" under its launcher, committed, and seen by the controller."""
    env = ControllerEnv(broker, tmp_path)
    key, _ = SigningKeys.for_data_dir(tmp_path / "controller").ensure()
    launchers: dict[str, Launcher] = {}
    for i in range(count):
        launcher = new_launcher(tmp_path / f"device-{i}", unique_device_id(prefix), broker,
                                trusted_keys=[key.public_pem.decode()])
        launchers[launcher.agent.device_id] = launcher
    env.start()
    try:
        for launcher in launchers.values():
            launcher.start()
        for device_id, launcher in launchers.items():
            wait_committed(launcher, "a", f"{device_id} runs v1")
        wait_for(lambda: all(reported_version(env, d) == __version__ for d in launchers),
                 60, "the controller sees each device's first agent")
        yield env, launchers
    finally:
        for launcher in launchers.values():
            launcher.kill()
        env.stop()
