"""The README's main job: `edgewise demo` runs to the end and shows the whole fleet on the model."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]


def _run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.app.cli", "demo", "--dir", str(tmp_path / "demo"), *args],
        capture_output=True, text=True, timeout=240)


@pytest.mark.broker
def test_demo_with_mosquitto_shows_all_20_devices_on_the_model(tmp_path: Path) -> None:
    result = _run_demo(tmp_path, "--devices", "20", "--serve-seconds", "3", "--broker", "mosquitto")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = re.findall(r"^demo-\d{4}\s+online\s+iris:1\s+active\s", result.stdout, re.M)
    assert len(rows) == 20, result.stdout
    assert "20 devices, 20 online" in result.stdout
    assert "Where the pieces are" in result.stdout


def test_demo_runs_on_the_embedded_broker(tmp_path: Path) -> None:
    result = _run_demo(tmp_path, "--devices", "5", "--serve-seconds", "2", "--broker", "amqtt")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "amqtt on" in result.stdout
    assert len(re.findall(r"^demo-\d{4}\s+online\s+iris:1\s+active\s", result.stdout, re.M)) == 5
