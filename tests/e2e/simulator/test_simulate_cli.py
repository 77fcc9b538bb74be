"""`edgewise simulate` as a script runs it: progress on stderr while the fleet serves, the totals
on stdout (JSON with --json), nothing but the result with --quiet."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli.exit_codes import ExitCode
from simulator.broker import BrokerProcess, free_port
from simulator.cli import PROGRESS_EVERY_S

pytestmark = [pytest.mark.broker, pytest.mark.slow]

PROGRESS = re.compile(r"^\[\s*(\d+\.\d)s\] (\d+) predictions, (\d+) refused \(no model yet\), "
                      r"0/2 devices with a model$")


def _command(broker: BrokerProcess, data_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "controller.app.cli", "simulate", "--devices", "2", "--broker",
            f"127.0.0.1:{broker.port}", "--data-dir", str(data_dir), "--rate", "5",
            "--duration", str(PROGRESS_EVERY_S * 2), "--json", *extra]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EDGEWISE_")}


def test_simulate_reports_progress_while_it_runs(broker: BrokerProcess, tmp_path: Path) -> None:
    proc = subprocess.Popen(_command(broker, tmp_path / "sim"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # read as the lines come
            seen.append(line.rstrip("\n"))
            tick = PROGRESS.match(seen[-1])
            if tick:
                # a progress line arrived while the fleet still serves
                assert proc.poll() is None
                assert int(tick.group(3)) > 0  # no model rolled out: refused, and counted
                break
        else:
            pytest.fail("no progress line: " + "\n".join(seen))
        assert any("connecting 2 devices to 127.0.0.1:" in line for line in seen), seen
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    totals = json.loads(out)
    assert totals["devices"] == 2 and totals["devices_with_model"] == 0
    assert totals["refused_no_model"] >= int(tick.group(3))


def test_quiet_leaves_only_the_result(broker: BrokerProcess, tmp_path: Path) -> None:
    result = subprocess.run(_command(broker, tmp_path / "sim", "--quiet"), capture_output=True,
                            text=True, timeout=120, env=_env())
    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert json.loads(result.stdout)["devices"] == 2


def test_a_broker_that_cannot_be_reached_is_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = subprocess.run(
        [sys.executable, "-m", "controller.app.cli", "simulate", "--devices", "2", "--broker",
         f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "sim"), "--duration", "1",
         "--connect-timeout", "2", "--quiet"], capture_output=True, text=True, timeout=120,
        env=_env())
    assert result.returncode == ExitCode.ERROR and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: 2 of 2 agents did not connect to 127.0.0.1:{port} within 2 s "
                      "(first: sim-0000: connection refused (nothing listens on that port)); is "
                      "the broker up, and does it "
                      "allow 2 connections (max_connections)?; set --broker"], result.stderr
