"""The operator's path from the command line, against a controller process and a real
`edgewise-agent` daemon process on a real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import joblib
import numpy as np
import pytest
from click.testing import CliRunner

from controller.app.cli import cli
from simulator.broker import BrokerProcess
from simulator.demo import start_controller, stop_process

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            if command.invoke_without_command:  # it runs on its own too (`edgewise alerts`)
                yield f"{prefix}{name}", command
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


@pytest.mark.parametrize("name, command", list(_commands(cli)))
def test_every_command_explains_itself_with_an_example(name: str, command: click.Command) -> None:
    assert command.help, f"`edgewise {name}` has no help"
    assert "Example" in command.help, f"`edgewise {name}` --help has no example"


def test_cli_says_what_to_do_when_the_controller_is_down() -> None:
    result = CliRunner().invoke(cli, ["--controller", "http://127.0.0.1:9", "fleet"])
    assert result.exit_code == 1
    assert "cannot reach the controller" in result.output
    assert "edgewise controller serve" in result.output


def test_push_rollout_and_fleet_from_the_cli(fresh_broker: BrokerProcess, tmp_path: Path) -> None:
    # a broker of its own: `rollout start` targets every device the controller knows, and the
    # shared broker holds retained state of other tests' devices
    broker = fresh_broker
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier

    data = load_wine()
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(data.data, data.target)
    joblib.dump(model, tmp_path / "wine.joblib")
    np.save(tmp_path / "X.npy", data.data[:60])
    np.save(tmp_path / "y.npy", data.target[:60])

    controller, url = start_controller(tmp_path / "controller", broker)
    agent_config = tmp_path / "agent.toml"
    agent_config.write_text(
        f'device_id = "pi-cli-1"\ndata_dir = "{tmp_path / "agent"}"\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {broker.port}\n[labels]\nsite = "lab"\n')
    agent = subprocess.Popen([sys.executable, "-m", "edge_agent.daemon", "--config", str(agent_config)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    runner = CliRunner()
    base = ["--controller", url]
    try:
        pushed = runner.invoke(cli, [*base, "models", "push", str(tmp_path / "wine.joblib"),
                                     "--sample", str(tmp_path / "X.npy"),
                                     "--labels", str(tmp_path / "y.npy"), "--name", "wine"])
        assert pushed.exit_code == 0, pushed.output
        assert pushed.stdout.startswith("registered wine:1")
        # progress on stderr: the conversion's steps, the parity, the upload
        assert "converting wine.joblib to onnx float32" in pushed.stderr
        assert "parity on" in pushed.stderr and "uploading" in pushed.stderr

        listed = runner.invoke(cli, [*base, "models", "list", "--json"])
        assert [m["name"] for m in json.loads(listed.output)] == ["wine"]

        for _ in range(100):  # the daemon registers on first contact
            fleet = json.loads(runner.invoke(cli, [*base, "fleet", "--json"]).output)
            if [d for d in fleet if d["device_id"] == "pi-cli-1"]:
                break
            time.sleep(0.1)
        rolled = runner.invoke(cli, [*base, "rollout", "start", "wine", "--wait", "--timeout", "60"])
        if rolled.exit_code != 0:
            agent.terminate()
            detail = agent.stdout.read().decode()[-3000:] if agent.stdout else ""
            state = runner.invoke(cli, [*base, "fleet", "--json"]).output
            pytest.fail(f"rollout did not finish: {rolled.output[-300:]}\n{state}\n{detail}")
        assert "1/1 active" in rolled.output

        table = runner.invoke(cli, [*base, "fleet"])
        assert "pi-cli-1" in table.output and "wine:1" in table.output and "online" in table.output
        assert (tmp_path / "agent" / "active.json").exists()

        bad = runner.invoke(cli, [*base, "rollout", "start", "wine:7"])
        assert bad.exit_code == 1 and "404" in bad.output

        # for CI: JSON on stdout, nothing on stderr
        quiet = runner.invoke(cli, [*base, "models", "push", str(tmp_path / "wine.joblib"),
                                    "--sample", str(tmp_path / "X.npy"), "--name", "wine",
                                    "--json", "--quiet"])
        assert quiet.exit_code == 0, quiet.output
        assert json.loads(quiet.stdout)["version"] == 2 and quiet.stderr == ""
    finally:
        agent.terminate()
        agent.wait(10)
        stop_process(controller)
    # the daemon stopped cleanly on SIGTERM
    assert agent.returncode == 0, agent.stdout.read().decode() if agent.stdout else ""
