"""The fleet-scale path at a few hundred devices: connect, receive a real model, serve, report,
change version, lose nothing. (Memory and CPU per device are measured by bench/bench_fleet.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.broker import find_mosquitto
from simulator.scenario import parse_scenario
from simulator.scenario_run import RunOptions, run_scenario_sync

pytestmark = [pytest.mark.broker, pytest.mark.slow]

DEVICES = 300

SCALE = f"""
name = "scale-ci"
description = "{DEVICES} devices: rollout, disconnects, a second rollout"
duration_s = 10
seed = 2

[model]
dataset = "iris"

[[fleet]]
name = "x"
count = {DEVICES // 2}
labels = {{ site = "x" }}

[[fleet]]
name = "y"
count = {DEVICES - DEVICES // 2}
labels = {{ site = "y" }}

[workload]
rate_per_device = 1.0
feedback_delay_s = 0.5
feedback_coverage = 0.5

[[events]]
at = 1
action = "disconnect"
fraction = 0.1

[[events]]
at = 2
action = "rollout"
estimator = "random_forest"
"""


def test_a_few_hundred_devices_roll_out_serve_and_lose_nothing(tmp_path: Path) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    report = run_scenario_sync(parse_scenario(SCALE), RunOptions(workdir=tmp_path))
    timeline = [entry for _, entry in report.timeline]
    assert any(e.startswith(f"all {DEVICES // 10} reconnected") for e in timeline), timeline
    assert any(e.startswith(f"iris:2 active on all {DEVICES} live targets") for e in timeline), \
        timeline
    assert report.controller_view["devices"] == DEVICES
    assert report.controller_view["online"] == DEVICES
    assert report.controller_view["versions"] == {"iris:2": DEVICES}
    totals = report.totals()
    assert totals["lost"] == 0 and totals["pending"] == 0
    assert totals["stored"] == totals["assigned"] >= DEVICES * 5
    assert report.passed
    assert report.resources["rss_mib"] > 0 and report.resources["cpu_s"] > 0
