"""Agent self-update with real ``edgewise-agent`` daemons under ``edgewise-agent-launcher``.

Each slot is a prepared agent (tests/e2e/agent_update/launchers.py). A new agent is a tar archive
staged with ``edgewise-agent-launcher stage``:

* a good one is started, reports healthy (its local API says ``connected``) through its
  probation, and is committed;
* one that runs but never reaches the broker fails its probation, and the old agent runs again;
* a SIGKILL of the launcher in the middle of the switch (journal written, symlink not yet
  switched) leaves a device whose next launcher start runs an agent that comes up healthy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.broker import BrokerProcess, free_port
from tests.e2e.agent_update.launchers import (
    Launcher,
    agent_script,
    make_archive,
    new_launcher,
    wait_committed,
)
from tests.harness.agents import unique_device_id
from tests.harness.waiting import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]


@contextlib.contextmanager
def device(tmp_path: Path, broker: BrokerProcess) -> Iterator[Launcher]:
    launcher = new_launcher(tmp_path / "device", unique_device_id("self"), broker)
    try:
        yield launcher
    finally:
        launcher.kill()


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
