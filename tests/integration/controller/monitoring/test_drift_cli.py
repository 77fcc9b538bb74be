"""`edgewise drift` against a real HTTP server (uvicorn on a free port) over the known drift
history of tests/harness/drift_fleet.py: the table with its sparklines and markers, --json,
per device and group, and refusals."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from controller.app.cli import cli
from controller.monitoring.drift_render import NO_FIGURE, SPARKS, sparkline
from tests.harness.api_server import serving
from tests.harness.drift_fleet import MODEL, SHIFTED, STALE_WINDOWS, make_controller, populate


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    c = make_controller(tmp_path_factory.mktemp("drift-cli"))
    populate(c, time.time())
    with serving(c) as url:
        yield url
    c.db.dispose()


def run(url: str, *args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, ["--controller", url, "drift", *args])


def test_the_table_ranks_the_shifted_feature_first_with_its_sparkline(url: str) -> None:
    result = run(url, f"{MODEL}:2", "--since", "1h", "--buckets", "12")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert re.match(rf"{MODEL}:2 · last 1h in 1[23] buckets of 5m · 4 devices, 225 windows "
                    rf"\({STALE_WINDOWS} skipped: {STALE_WINDOWS} other_profile\)", lines[0])
    assert lines[1].split()[:6] == ["FEATURE", "LATEST", "PSI", "MAX", "PSI", "THRESHOLD"]
    first = lines[2].split()
    assert first[0] == SHIFTED and first[4] == "yes" and float(first[1]) > 0.3
    trend = first[-1]
    assert trend.lstrip(NO_FIGURE)[0] == SPARKS[0] and SPARKS[-1] in trend  # low, then high
    for line in lines[3:6]:
        assert line.split()[4] == "no", line
    assert "\x1b[" not in result.output  # no colour when not on a terminal
    markers = result.output.split("\n\n", 1)[1]
    assert markers.splitlines()[0].split() == ["WHEN", "MARKER", "WHAT"]
    assert re.search(r"m ago\s+alert fired\s+drift alert fired on 2 devices: d-1, d-2", markers)
    assert re.search(rf"version stopped\s+{MODEL}:2 stopped on d-4 \(now {MODEL}:3\)", markers)
    assert "rollout ended" in markers


def test_json_is_the_view(url: str) -> None:
    result = run(url, f"{MODEL}:2", "--json", "--top", "2")
    assert result.exit_code == 0, result.output
    view = json.loads(result.output)
    assert (view["model"], view["version"], view["by"], view["status"]) == (MODEL, 2, "feature",
                                                                            "ok")
    assert len(view["features"]) == 2 and view["features_total"] == 4
    assert view["features"][0]["name"] == SHIFTED and len(view["buckets"]) >= 12
    latest = json.loads(run(url, MODEL, "--json").output)
    assert latest["version"] == 3  # without a version: the latest one


def test_per_device_and_per_group(url: str) -> None:
    devices = run(url, f"{MODEL}:2", "--by", "device")
    assert devices.exit_code == 0, devices.output
    rows = devices.output.splitlines()
    assert rows[0].endswith("by device · 4 devices, 225 windows (3 skipped: 3 other_profile)")
    assert rows[1].split()[0] == "DEVICE"
    assert {rows[2].split()[0], rows[3].split()[0]} == {"d-1", "d-2"}
    assert rows[2].split()[-1] == SHIFTED and rows[4].split()[-1] == "-"
    groups = run(url, f"{MODEL}:2", "--by", "group", "--group-by", "site", "--top", "1")
    assert groups.exit_code == 0, groups.output
    lines = groups.output.splitlines()
    assert lines[1].split()[0] == "SITE" and lines[2].split()[0] == "berlin"
    assert "(1 more not shown)" in groups.output


def test_a_version_without_a_profile_says_why(url: str) -> None:
    result = run(url, f"{MODEL}:1")
    assert result.exit_code == 0, result.output
    assert "note: drifty:1 was registered without a reference profile" in result.output
    assert "FEATURE" not in result.output


@pytest.mark.parametrize("args, code, message", [
    (["nothing"], 1, "404: model 'nothing' not found"),
    ([f"{MODEL}:9"], 1, f"404: model version '{MODEL}:9' not found"),
    ([f"{MODEL}:x"], 2, "must be NAME or NAME:VERSION"),
    ([MODEL, "--since", "10s"], 2, "between 1 minute and 30 days"),
    ([MODEL, "--since", "yesterday"], 2, "neither a span"),
    ([MODEL, "--by", "sideways"], 2, "'sideways' is not one of"),
])
def test_refusals(url: str, args: list[str], code: int, message: str) -> None:
    result = run(url, *args)
    assert result.exit_code == code, result.output
    assert message in result.output


def test_help_has_an_example(url: str) -> None:
    result = run(url, "--help")
    assert result.exit_code == 0 and "edgewise drift iris:2 --since 6h" in result.output


def test_sparklines_share_a_scale_and_mark_what_was_not_measured() -> None:
    assert sparkline([0.0, 0.05, 0.1, None, 0.2], top=0.2) == "▁▃▅·█"
    assert sparkline([5.0, -1.0], top=1.0) == "█▁" and sparkline([0.3], top=0.0) == "▁"
