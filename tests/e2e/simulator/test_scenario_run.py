"""The scenario runner against a real Mosquitto and a real controller process: a short timeline
with a disconnect, a kill, a restart and a drift produces the report it should."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from controller.app.cli import cli
from simulator.broker import find_mosquitto
from simulator.scenario import parse_scenario
from simulator.scenario_report import render
from simulator.scenario_run import RunOptions, run_scenario_sync

pytestmark = [pytest.mark.broker, pytest.mark.slow]

SHORT = """
name = "short"
description = "disconnect, kill, restart, drift"
duration_s = 13
seed = 5

[controller]
alert_interval_s = 1.0
alert_fire_after = 1

[model]
dataset = "iris"

[[fleet]]
name = "a"
count = 4
labels = { site = "berlin" }
[fleet.agent]
metrics_window_s = 2.0

[[fleet]]
name = "b"
count = 3
labels = { site = "oslo" }
[fleet.agent]
metrics_window_s = 2.0

# 60 rows/s: 120 rows per 2 s window, enough for a drift verdict
[workload]
rate_per_device = 60
feedback_delay_s = 0.3

[[events]]
at = 1
action = "disconnect"
group = "a"
count = 2

[[events]]
at = 2
action = "kill"
devices = ["sim-a-0003"]

[[events]]
at = 3
action = "drift"
kind = "covariate_shift"
group = "b"
features = ["petal length (cm)", "petal width (cm)"]
sd = 3.0

[[events]]
at = 5
action = "restart"

[expect]
lost = 0
alerts = ["drift"]
"""


@pytest.fixture(autouse=True)
def _mosquitto() -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")


def _lines(report_text: str, words: str) -> list[str]:
    return [line for line in report_text.splitlines() if words in line]


def test_short_scenario_reports_what_happened_and_loses_nothing(tmp_path: Path) -> None:
    scenario = parse_scenario(SHORT, source="short.toml")
    progress: list[str] = []
    report = run_scenario_sync(scenario, RunOptions(workdir=tmp_path, progress=progress.append))
    text = render(report)

    timeline = [entry for _, entry in report.timeline]
    assert any(e.startswith("disconnect 2 devices") for e in timeline), timeline
    assert any(e.startswith("all 2 reconnected") for e in timeline), timeline
    assert any(e.startswith("kill 1 agents (sim-a-0003)") for e in timeline)
    assert any(e.startswith("controller saw 1/1 killed devices offline") for e in timeline), \
        timeline
    assert any(e.startswith("drift (covariate_shift) on 3 devices") for e in timeline)
    assert any(e.startswith("restart 1 agents") for e in timeline)
    assert any("restarted agents connected and serving {'iris:1': 1}" in e for e in timeline), \
        timeline
    assert progress, "the runner reports progress as it goes"

    # nothing lost: every seq every outbox assigned is at the controller
    totals = report.totals()
    assert totals["lost"] == 0 and totals["extra"] == 0
    assert totals["pending"] == 0
    assert totals["stored"] == totals["assigned"] > 1000
    assert {a.device_id for a in report.accounts} == set(scenario.device_ids())
    assert report.workload["shifted_rows"] > 0

    # the controller saw the fleet come back and the drift
    assert report.controller_view["online"] == 7
    assert report.controller_view["versions"] == {"iris:1": 7}
    assert "drift" in report.controller_view["alerts"]
    assert report.end_state["killed"] == 0 and report.agent_counters["restarts"] == 1
    assert report.passed, text
    assert _lines(text, "LOST: 0") and _lines(text, "Result: PASS")


def test_a_failed_expectation_fails_the_run(tmp_path: Path) -> None:
    scenario = parse_scenario("""
name = "no-alert"
duration_s = 2
[[fleet]]
name = "a"
count = 2
[workload]
rate_per_device = 5
[[events]]
at = 1
action = "disconnect"
[expect]
alerts = ["drift"]
""")
    report = run_scenario_sync(scenario, RunOptions(workdir=tmp_path))
    assert report.lost == 0
    failed = [check for check, ok, _ in report.checks if not ok]
    assert failed == ["alert 'drift' fired"]
    assert not report.passed and "Result: FAIL" in render(report)


def test_cli_refuses_a_broken_scenario_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[fleet]]\nname = "a"\n[[events]]\nat = 1\naction = "explode"\n')
    result = CliRunner().invoke(cli, ["simulate", "--scenario", str(bad), "--data-dir",
                                      str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "action: must be one of" in result.output
