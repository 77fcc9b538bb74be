"""`edgewise rollout start --spec FILE` with a spec that names an agent version instead of a
model: a real controller process on a real Mosquitto, a registered agent bundle and two
simulated devices. The dry run plans it and the start stores it as a rollout of kind agent with
the file's waves; a spec that names a model beside it, or a model gate, is refused in one line
before anything is stored. (Delivering the agent through real launchers is
tests/e2e/agent_update/test_agent_rollout.py's.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from simulator.fleet import SimulatedFleet
from tests.e2e.agent_update.launchers import make_archive
from tests.harness.controller_env import ControllerEnv, run_cli, wait_registered

pytestmark = [pytest.mark.broker, pytest.mark.slow]

VERSION = "2.0.0"
SPEC = f"""\
agent_version = "{VERSION}"
name = "agent-2-canary"
selector = "fleet=spec"
waves = "1,100%"
soak_seconds = 0
wave_timeout_seconds = 600

[gates]
min_reporting_share = 1.0
max_failed_activations = 0
"""


def test_rollout_start_with_a_spec_naming_an_agent_version_starts_an_agent_rollout(
        env: ControllerEnv, tmp_path: Path) -> None:
    archive, _ = make_archive(tmp_path, "#!/bin/sh\nexit 0\n")
    spec = tmp_path / "agent-2.toml"
    spec.write_text(SPEC)
    both = tmp_path / "both.toml"
    both.write_text(f'model = "iris"\nversion = 1\n{SPEC}')
    outputs: dict[str, tuple[int, str]] = {}

    async def scenario() -> None:
        fleet = SimulatedFleet(env.broker.address, 2, tmp_path / "devices",
                               labels=lambda i: {"fleet": "spec"})
        await fleet.start()
        try:
            await wait_registered(env, {a.device_id for a in fleet.agents})
            outputs["push"] = await run_cli(env.url, "agent", "push", str(archive), "--version",
                                            VERSION, "--json")
            outputs["both"] = await run_cli(env.url, "rollout", "start", "--spec", str(both))
            outputs["named"] = await run_cli(env.url, "rollout", "start", "iris:1", "--spec",
                                             str(spec))
            outputs["gate"] = await run_cli(env.url, "rollout", "start", "--spec", str(spec),
                                            "--max-accuracy-drop", "0.02")
            outputs["dry"] = await run_cli(env.url, "rollout", "start", "--spec", str(spec),
                                           "--dry-run")
            outputs["start"] = await run_cli(env.url, "rollout", "start", "--spec", str(spec),
                                             "--json")
        finally:
            await fleet.stop(drain_timeout=2)

    asyncio.run(scenario())
    assert outputs["push"][0] == 0, outputs["push"][1]

    code, out = outputs["both"]
    assert code == 1 and ("model and agent_version: name one, model (and version) for a model "
                          "rollout or agent_version for an agent rollout, not both") in out, out
    code, out = outputs["named"]
    assert code == 2 and f"names agent_version '{VERSION}' (an agent rollout): name no model " \
        "('iris:1') beside it" in out, out
    code, out = outputs["gate"]
    assert code == 1 and ("gates max_accuracy_drop: model gates, not for an agent rollout (its "
                          "gates are min_reporting_share and max_failed_activations)") in out, out

    code, out = outputs["dry"]
    assert code == 0, out
    assert f"rollout agent-2-canary: agent {VERSION} to 2 devices (fleet=spec); waves 1,100%" \
        in out and "dry run: nothing was stored or sent" in out, out

    code, out = outputs["start"]
    assert code == 0, out
    view = json.loads(out)
    assert (view["id"], view["kind"], view["agent_version"], view["name"]) == (
        1, "agent", VERSION, "agent-2-canary")
    assert [w["devices"] for w in view["waves"]] == [1, 1]
    assert view["spec"]["kind"] == "agent" and "model" not in view["spec"]
    # the refused starts stored nothing: this is the only rollout
    assert [(r["id"], r["kind"]) for r in env.client.rollouts()] == [(1, "agent")]
