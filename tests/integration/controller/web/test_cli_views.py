"""`edgewise fleet`, `edgewise device show`, `edgewise models show` against a real HTTP server
(uvicorn on a free port) over the known fleet of tests/harness/web_fleet.py."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from controller.app.cli import cli
from controller.fleet.render import format_fleet_table
from tests.harness.api_server import serving
from tests.harness.web_fleet import make_controller, populate


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    c = make_controller(tmp_path_factory.mktemp("cli"))
    populate(c, time.time())
    with serving(c) as url:
        yield url
    c.db.dispose()


def run(url: str, *args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, ["--controller", url, *args])


def test_fleet_table_keeps_its_format(url: str) -> None:
    result = run(url, "fleet")
    assert result.exit_code == 0, result.output
    assert re.search(r"^b-1\s+online\s+iris:1\s+active\s", result.output, re.M)
    assert re.search(r"^o-1\s+offline\s+iris:1\s+active\s", result.output, re.M)
    assert re.search(r"^l-1\s+online\s+iris:1\s+failed\s", result.output, re.M)
    assert "5 devices, 4 online" in result.output
    assert "\x1b[" not in result.output  # no colour when not on a terminal


def test_fleet_json_and_selector(url: str) -> None:
    rows = json.loads(run(url, "fleet", "--json").output)
    assert [r["device_id"] for r in rows] == ["b-1", "b-2", "l-1", "o-1", "x-1"]
    berlin = run(url, "fleet", "--selector", "site=berlin")
    assert berlin.exit_code == 0
    assert "2 devices, 2 online (selector site=berlin)" in berlin.output
    assert "o-1" not in berlin.output


def test_a_bad_selector_is_refused_before_any_request(url: str) -> None:
    result = run("http://127.0.0.1:9", "fleet", "--selector", "site in berlin")
    assert result.exit_code == 2
    assert "expected '(' to open the value list at position 8" in result.output
    assert "        ^" in result.output


def test_fleet_watch_redraws_until_count(url: str) -> None:
    result = run(url, "fleet", "--watch", "-n", "0.2", "--count", "3")
    assert result.exit_code == 0, result.output
    assert result.output.count("5 devices, 4 online") == 3
    assert result.output.count(url) == 3  # the header line of each refresh
    lines = run(url, "fleet", "--watch", "--json", "-n", "0.2", "--count", "2").output.splitlines()
    assert len(lines) == 2 and all(len(json.loads(line)) == 5 for line in lines)


def test_colour_does_not_shift_the_columns() -> None:
    rows = [{"device_id": "a", "online": True, "active_model": "m", "active_version": 1,
             "state": "failed", "last_seen": 100.0, "predictions": 3, "accuracy": 0.5}]
    plain = format_fleet_table(rows, colour=False, now=130.0)
    coloured = format_fleet_table(rows, colour=True, now=130.0)
    assert "\x1b[" in coloured and click.unstyle(coloured) == plain


def test_device_show(url: str) -> None:
    result = run(url, "device", "show", "l-1")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "l-1" in out and "online" in out and "site=lisbon" in out
    assert "last error  smoke test failed: labels differ" in out
    assert re.search(r"failed\s+iris:1\s+iris:2\s+dep-v2\s+smoke test failed", out)
    assert re.search(r"update\s+iris:2\s+smoke test failed", out)
    b1 = run(url, "device", "show", "b-1").output
    assert re.search(r"last 1h\s+10 predictions, 1 errors, accuracy 66.7%", b1)
    assert "drift PSI" in b1
    assert re.search(r"health\s+RSS 61.1 MiB, CPU 2.0%, temperature 82.0 C", b1)
    assert "health " not in out  # l-1 sends no health: no line
    view = json.loads(run(url, "device", "show", "b-1", "--json").output)
    assert set(view) == {"device", "recent", "history", "errors", "health"}
    assert view["health"]["temp_c"] == 82.0
    assert view["recent"]["predictions"] == 10 and view["recent"]["drift_psi"] > 1.0
    assert [h["state"] for h in view["history"]] == ["active", "idle"]


def test_device_show_of_an_unknown_device(url: str) -> None:
    result = run(url, "device", "show", "nobody")
    assert result.exit_code == 1
    assert "404" in result.output and "nobody" in result.output


def test_models_show(url: str) -> None:
    result = run(url, "models", "show", "iris")
    assert result.exit_code == 0, result.output
    assert re.search(r"^1\s+onnx\s+.*2\.5e-07\s+100\.0%\s+3 \(2 online\)", result.output, re.M)
    assert re.search(r"^2\s+onnx\s+.*1 \(1 online\)\s+0\s+1\s", result.output, re.M)
    assert "v1: berlin 1, lisbon 1, oslo 1" in result.output
    summary = json.loads(run(url, "models", "show", "iris", "--json").output)
    assert [v["version"] for v in summary["versions"]] == [1, 2]
    missing = run(url, "models", "show", "wine")
    assert missing.exit_code == 1 and "404" in missing.output


def test_the_demo_can_still_print_the_fleet_table(tmp_path: Path) -> None:
    from simulator import demo

    assert demo.format_fleet_table is format_fleet_table
