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

from edge_agent import __version__
from edge_agent.launcher.slots import ROOT_ENV
from simulator.broker import BrokerProcess, free_port
from tests.e2e.agent_update.launchers import (
    Launcher,
    agent_update,
    cli,
    make_archive,
    reported_version,
    trusting_fleet,
    wait_committed,
)
from tests.harness.controller_env import ControllerEnv, wait_status
from tests.harness.waiting import holds_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(420)]

FLEET = "agent-rollout"


@contextlib.contextmanager
def fleet(tmp_path: Path, broker: BrokerProcess,
          count: int = 2) -> Iterator[tuple[ControllerEnv, dict[str, Launcher]]]:
    with trusting_fleet(tmp_path, broker, "roll", count) as (env, launchers):
        for device_id in launchers:  # the broker may hold other tests' devices: select ours
            env.client.set_labels(device_id, {"fleet": FLEET}, [])
        yield env, launchers


def bundle_script(version: str, extra: str = "") -> str:
    """One archive for every device: it records its start in the root of the launcher that
    runs it (the launcher tells its agent where that is)."""
    return (f"#!/bin/sh\necho {version} >> \"${ROOT_ENV}/started\"\n"
            f"exec {sys.executable} -m edge_agent.daemon \"$@\" {extra}\n")


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
