"""Agent self-update with real ``edgewise-agent`` daemons under ``edgewise-agent-launcher``.

Each slot is a prepared agent whose ``bin/edgewise-agent`` records its version in a marker file
and runs the real daemon (this checkout's, as a device's virtualenv would). A new agent is a tar
archive staged with ``edgewise-agent-launcher stage``:

* a good one is started, reports healthy (its local API says ``connected``) through its
  probation, and is committed;
* one that runs but never reaches the broker fails its probation, and the old agent runs again;
* a SIGKILL of the launcher in the middle of the switch (journal written, symlink not yet
  switched) leaves a device whose next launcher start runs an agent that comes up healthy.
"""

from __future__ import annotations

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
import pytest

from simulator.broker import BrokerProcess, free_port
from tests.harness.agents import AgentProcess, unique_device_id
from tests.harness.paths import REPO_ROOT
from tests.harness.waiting import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]

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


def connected(agent: AgentProcess) -> bool:
    try:
        return bool(httpx.get(f"http://127.0.0.1:{agent.http_port}/v1/health",
                              timeout=2).json().get("connected"))
    except (httpx.HTTPError, ValueError):
        return False


@contextlib.contextmanager
def device(tmp_path: Path, broker: BrokerProcess) -> Iterator[Launcher]:
    agent = AgentProcess(tmp_path / "device", unique_device_id("self"), broker.address, None)
    root = tmp_path / "device" / "agent-slots"
    make_slot(root / "slots" / "a", agent_script("v1", root))
    launcher = Launcher(root, agent)
    try:
        yield launcher
    finally:
        launcher.kill()


def wait_committed(launcher: Launcher, slot: str, what: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        status = launcher.status()
        ok = status["phase"] == "committed" and status["good"] == slot \
            and status["current"] == slot
        return status if ok and connected(launcher.agent) else None

    return wait_for(done, 120, lambda: f"{what}; launcher log:\n{launcher.log_text()[-3000:]}")


def test_a_good_agent_update_is_committed(broker: BrokerProcess, tmp_path: Path) -> None:
    with device(tmp_path, broker) as launcher:
        launcher.start()
        wait_committed(launcher, "a", "v1 running")
        archive, sha = make_archive(tmp_path, agent_script("v2", launcher.root))
        staged = launcher.stage(archive, sha, "v2")
        assert staged["phase"] == "staged" and staged["trial"] == "b"
        status = wait_committed(launcher, "b", "v2 committed after its probation")
        assert status["last_error"] is None
        assert launcher.started() == ["v1", "v2"]
        launcher.stop()
        assert launcher.proc is not None and launcher.proc.returncode == 0


def test_a_new_agent_that_fails_its_probation_is_rolled_back(
        broker: BrokerProcess, tmp_path: Path) -> None:
    with device(tmp_path, broker) as launcher:
        launcher.start()
        wait_committed(launcher, "a", "v1 running")
        # runs and serves its local API, but never reaches the broker
        bad = agent_script("v2-bad", launcher.root, extra=f"--broker 127.0.0.1:{free_port()}")
        archive, sha = make_archive(tmp_path, bad)
        launcher.stage(archive, sha, "v2-bad")
        status = wait_committed(launcher, "a", "v1 restored after v2 failed its probation")
        assert "probation" in (status["last_error"] or ""), status
        assert launcher.started() == ["v1", "v2-bad", "v1"]


def test_sigkill_during_the_switch_leaves_a_runnable_agent(
        broker: BrokerProcess, tmp_path: Path) -> None:
    with device(tmp_path, broker) as launcher:
        launcher.start(pause_in="switching")
        wait_committed(launcher, "a", "v1 running")
        archive, sha = make_archive(tmp_path, agent_script("v2", launcher.root))
        launcher.stage(archive, sha, "v2")
        wait_for(lambda: (launcher.root / "paused-in").exists(), 30, "the switch parked")
        status = launcher.status()
        assert status["phase"] == "probation" and status["current"] == "a", status
        launcher.kill()
        (launcher.root / "paused-in").unlink()
        launcher.start()
        wait_committed(launcher, "b", "v2 committed after the launcher was killed mid-switch")
        assert launcher.started() == ["v1", "v2"]
