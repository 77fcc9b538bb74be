"""Agent versions rolled out in waves by the rollout engine, end to end: a real broker, a real
``edgewise controller serve``, and two devices, each a real ``edgewise-agent-launcher`` running a
real agent daemon that trusts the controller's signing key.

* ``edgewise agent rollout 2.0.0 --waves 1,100%``: the canary gets the signed agent bundle, its
  launcher switches and commits it after its probation, the second wave follows, the rollout
  completes and the controller sees both devices on the new agent;
* an agent that fails its probation on the canary: its launcher restores the old agent, which
  reports the failed version; the failed-update gate aborts the rollout, the second device is
  never sent anything, and the canary runs the old agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.security.signing_keys import SigningKeys
from edge_agent import __version__
from edge_agent.launcher.slots import ROOT_ENV
from simulator.broker import BrokerProcess, free_port
from tests.e2e.agent_update.test_agent_delivery import agent_update, reported_version
from tests.e2e.agent_update.test_self_update import (
    Launcher,
    agent_script,
    make_archive,
    make_slot,
    wait_committed,
)
from tests.harness.agents import AgentProcess, unique_device_id
from tests.harness.controller_env import ControllerEnv, run_cli, wait_status
from tests.harness.waiting import holds_for, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(420)]

FLEET = "agent-rollout"


@contextlib.contextmanager
def fleet(tmp_path: Path, broker: BrokerProcess,
          count: int = 2) -> Iterator[tuple[ControllerEnv, dict[str, Launcher]]]:
    env = ControllerEnv(broker, tmp_path)
    key, _ = SigningKeys.for_data_dir(tmp_path / "controller").ensure()
    launchers: dict[str, Launcher] = {}
    for i in range(count):
        home = tmp_path / f"device-{i}"
        agent = AgentProcess(home, unique_device_id("roll"), broker.address, None,
                             trusted_keys=[key.public_pem.decode()])
        root = home / "agent-slots"
        make_slot(root / "slots" / "a", agent_script("v1", root))
        launchers[agent.device_id] = Launcher(root, agent)
    env.start()
    try:
        for launcher in launchers.values():
            launcher.start()
        for device_id, launcher in launchers.items():
            wait_committed(launcher, "a", f"{device_id} runs v1")
            wait_for(lambda: all(reported_version(env, d) == __version__ for d in launchers),
                     60, "the controller sees each device's first agent")
        for device_id in launchers:  # the broker may hold other tests' devices: select ours
            env.client.set_labels(device_id, {"fleet": FLEET}, [])
        yield env, launchers
    finally:
        for launcher in launchers.values():
            launcher.kill()
        env.stop()


def bundle_script(version: str, extra: str = "") -> str:
    """One archive for every device: it records its start in the root of the launcher that
    runs it (the launcher tells its agent where that is)."""
    return (f"#!/bin/sh\necho {version} >> \"${ROOT_ENV}/started\"\n"
            f"exec {sys.executable} -m edge_agent.daemon \"$@\" {extra}\n")


def cli(env: ControllerEnv, *args: str) -> str:
    code, out = asyncio.run(run_cli(env.url, *args))
    assert code == 0, out
    return out


def start_rollout(env: ControllerEnv, archive: Path, version: str) -> dict[str, Any]:
    cli(env, "agent", "push", str(archive), "--version", version, "--json")
    out = cli(env, "agent", "rollout", version, "--selector", f"fleet={FLEET}", "--waves", "1,100%",
              "--soak", "1s", "--wave-timeout", "4m", "--json")
    return dict(json.loads(out))


def test_an_agent_version_goes_out_wave_by_wave_to_completion(
        broker: BrokerProcess, tmp_path: Path) -> None:
    with fleet(tmp_path, broker) as (env, launchers):
        archive, _ = make_archive(tmp_path, bundle_script("v2"))
        view = start_rollout(env, archive, "2.0.0")
        assert view["kind"] == "agent" and view["agent_version"] == "2.0.0"
        assert [w["devices"] for w in view["waves"]] == [1, 1]
        done = asyncio.run(wait_status(env, view["id"], {"completed", "aborted", "failed",
                                                         "paused"}, 300))
        assert done["status"] == "completed", done["reasons"]
        assert [w["active"] for w in done["waves"]] == [1, 1]
        # the second wave started only after the first passed: one device each, in order
        started = [r for r in done["reasons"] if "started" in r]
        assert started == ["wave 1/2 started: 1 devices", "wave 2/2 started: 1 devices"]
        for device_id, launcher in launchers.items():
            status = wait_committed(launcher, "b", f"{device_id} committed the new agent")
            assert status["last_error"] is None
            assert launcher.started() == ["v1", "v2"]
            assert reported_version(env, device_id) == "2.0.0"


def test_an_agent_that_fails_its_probation_on_the_canary_stops_the_rollout(
        broker: BrokerProcess, tmp_path: Path) -> None:
    with fleet(tmp_path, broker) as (env, launchers):
        # runs and serves its local API, but never reaches the broker
        bad = bundle_script("v2-bad", extra=f"--broker 127.0.0.1:{free_port()}")
        archive, _ = make_archive(tmp_path, bad)
        view = start_rollout(env, archive, "2.0.0-bad")
        done = asyncio.run(wait_status(env, view["id"], {"completed", "aborted", "failed",
                                                         "paused"}, 300))
        assert done["status"] == "aborted", done["reasons"]
        (canary,) = done["reverted"]
        assert any(r.startswith("abort (failed_activations") for r in done["reasons"]), (
            done["reasons"], env.client.device(canary), agent_update(launchers[canary]),
            launchers[canary].started(), launchers[canary].log_text()[-3000:])
        assert done["reverted"][canary] == f"agent {__version__}"
        (other,) = set(launchers) - {canary}
        status = wait_committed(launchers[canary], "a", "the canary back on its old agent")
        assert "probation" in (status["last_error"] or ""), status
        assert launchers[canary].started() == ["v1", "v2-bad", "v1"]
        assert reported_version(env, canary) == __version__
        # the second wave was never sent
        assert done["waves"][1]["sent"] == 0
        holds_for(lambda: launchers[other].started() == ["v1"]
                  and launchers[other].status()["phase"] == "committed", 3,
                  "the other device keeps its agent")
