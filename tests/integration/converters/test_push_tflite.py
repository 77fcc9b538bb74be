"""`models push --format tflite`: the converter's TFLite artifact goes through the registry to a
real agent daemon on a real broker, which loads it, passes the smoke tests and serves it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from controller.app.cli import cli
from simulator.broker import BrokerProcess
from simulator.demo import start_controller, stop_process

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_push_a_keras_int8_tflite_model_and_roll_it_out(
        fresh_broker: BrokerProcess, tmp_path: Path, keras_models: dict[str, Any],
        digits: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = digits
    keras_models["mlp"].save(tmp_path / "digits.keras")
    np.save(tmp_path / "X.npy", X[:200])
    np.save(tmp_path / "y.npy", y[:200])
    controller, url = start_controller(tmp_path / "controller", fresh_broker)
    config = tmp_path / "agent.toml"
    config.write_text(f'device_id = "pi-tflite-1"\ndata_dir = "{tmp_path / "agent"}"\n'
                      f'[broker]\nhost = "127.0.0.1"\nport = {fresh_broker.port}\n')
    agent = subprocess.Popen([sys.executable, "-m", "edge_agent.daemon", "--config", str(config)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    runner = CliRunner()
    base = ["--controller", url]
    try:
        pushed = runner.invoke(cli, [*base, "models", "push", str(tmp_path / "digits.keras"),
                                     "--sample", str(tmp_path / "X.npy"), "--labels",
                                     str(tmp_path / "y.npy"), "--format", "tflite",
                                     "--quantize", "int8-static"])
        assert pushed.exit_code == 0, pushed.output
        assert "registered digits:1" in pushed.output
        for _ in range(100):  # the daemon registers on first contact
            fleet = json.loads(runner.invoke(cli, [*base, "fleet", "--json"]).output)
            if [d for d in fleet if d["device_id"] == "pi-tflite-1"]:
                break
            time.sleep(0.1)
        rolled = runner.invoke(cli, [*base, "rollout", "start", "digits", "--wait",
                                     "--timeout", "60"])
        if rolled.exit_code != 0:
            agent.terminate()
            detail = agent.stdout.read().decode()[-3000:] if agent.stdout else ""
            pytest.fail(f"rollout did not finish: {rolled.output[-300:]}\n{detail}")
        assert "1/1 active" in rolled.output
        active = json.loads((tmp_path / "agent" / "active.json").read_text())
        assert "tflite" in json.dumps(active)
    finally:
        agent.terminate()
        agent.wait(10)
        stop_process(controller)
