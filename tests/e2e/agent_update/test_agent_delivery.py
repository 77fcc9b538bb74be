"""Agent versions delivered by the controller, end to end: a real broker, a real
``edgewise controller serve``, a real ``edgewise-agent-launcher`` running a real agent daemon
that trusts the controller's signing key.

* ``edgewise agent push`` + ``edgewise agent deploy``: the agent verifies the signed agent
  manifest, downloads the archive over the chunk path, the launcher stages it, switches under its
  probation and commits it; the controller then sees the new ``agent_version``;
* a bundle whose agent fails its probation: the launcher restores the old agent, which learns
  that the version failed here, reports it, and does not stage it again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent import __version__
from simulator.broker import BrokerProcess, free_port
from tests.e2e.agent_update.launchers import (
    Launcher,
    agent_script,
    agent_update,
    make_archive,
    push_and_deploy,
    reported_version,
    trusting_fleet,
    wait_committed,
)
from tests.harness.controller_env import ControllerEnv
from tests.harness.waiting import holds_for, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]


@contextlib.contextmanager
def fleet(tmp_path: Path, broker: BrokerProcess) -> Iterator[tuple[ControllerEnv, Launcher]]:
    """One device running agent v1, seen by the controller."""
    with trusting_fleet(tmp_path, broker, "deliver") as (env, launchers):
        (launcher,) = launchers.values()
        yield env, launcher


def test_a_pushed_agent_version_is_delivered_and_committed(
        broker: BrokerProcess, tmp_path: Path) -> None:
    with fleet(tmp_path, broker) as (env, launcher):
        device_id = launcher.agent.device_id
        archive, _ = make_archive(tmp_path, agent_script("v2", launcher.root))
        push_and_deploy(env, launcher, archive, "2.0.0")
        status = wait_committed(launcher, "b", "the delivered agent committed")
        assert status["last_error"] is None
        assert launcher.started() == ["v1", "v2"]
        wait_for(lambda: reported_version(env, device_id) == "2.0.0", 60,
                 lambda: f"the controller sees agent_version 2.0.0 (sees "
                         f"{reported_version(env, device_id)!r}); {launcher.log_text()[-2000:]}")
        update = wait_for(lambda: (u := agent_update(launcher)) and u.get("state") == "current"
                          and u, 30, "the new agent reports it runs the desired version")
        assert update["running"] == "2.0.0"


def test_an_agent_that_fails_its_probation_is_restored_and_not_staged_again(
        broker: BrokerProcess, tmp_path: Path) -> None:
    with fleet(tmp_path, broker) as (env, launcher):
        device_id = launcher.agent.device_id
        # runs and serves its local API, but never reaches the broker
        bad = agent_script("v2-bad", launcher.root, extra=f"--broker 127.0.0.1:{free_port()}")
        archive, _ = make_archive(tmp_path, bad)
        push_and_deploy(env, launcher, archive, "2.0.0-bad")
        wait_for(lambda: launcher.started()[-1:] == ["v1"] and len(launcher.started()) == 3,
                 150, lambda: f"v1 restored; started {launcher.started()}; "
                              f"{launcher.log_text()[-2000:]}")
        status = wait_committed(launcher, "a", "v1 restored after the bad agent's probation")
        assert "probation" in (status["last_error"] or ""), status
        update = wait_for(lambda: (u := agent_update(launcher)) and u.get("state") == "failed"
                          and u, 60, "the restored agent reports the failed version")
        assert update["target"] == "2.0.0-bad" and "failed its probation" in update["error"]
        # the retained order is not acted on again: no second trial
        holds_for(lambda: launcher.started() == ["v1", "v2-bad", "v1"]
                  and launcher.status()["phase"] == "committed", 5, "no re-stage")
        assert reported_version(env, device_id) == __version__
