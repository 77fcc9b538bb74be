"""The scenario format: what loads, what is refused and with which words, device selection."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from simulator.scenario import (
    ScenarioError,
    Selector,
    load_scenario,
    parse_scenario,
    select,
)
from tests.harness.paths import REPO_ROOT

SHIPPED = sorted((REPO_ROOT / "simulator" / "scenarios").glob("*.toml"))

BASE = """
name = "t"
duration_s = 30
[[fleet]]
name = "a"
count = 4
labels = { site = "berlin" }
[[fleet]]
name = "b"
count = 6
labels = { site = "oslo", hw = "pi5" }
"""


def test_a_minimal_scenario_loads_with_defaults() -> None:
    s = parse_scenario(BASE)
    assert s.device_count == 10
    assert s.device_ids()[:2] == ["sim-a-0000", "sim-a-0001"]
    assert s.model.dataset == "iris" and s.dataset == "iris"
    assert s.workload.rate_per_device == 2.0
    assert s.expect.lost == 0 and s.events == ()


def test_events_are_sorted_by_time_and_keep_their_parameters() -> None:
    s = parse_scenario(BASE + """
[[events]]
at = 20
action = "slow_link"
group = "b"
latency_s = 0.5
duration_s = 5
[[events]]
at = 5
action = "kill"
devices = ["sim-a-0001"]
""")
    assert [e.action for e in s.events] == ["kill", "slow_link"]
    slow = s.events[1]
    assert slow.param("latency_s") == 0.5 and slow.param("bandwidth_kbps") is None
    assert slow.selector.groups == ("b",)


@pytest.mark.parametrize("extra, words", [
    ('[[events]]\nat = 1\naction = "explode"', "must be one of"),
    ('[[events]]\nat = 1\naction = "kill"\ncolour = "red"', "unknown keys ['colour']"),
    ('[[events]]\naction = "kill"', "needs at = SECONDS"),
    ('[[events]]\nat = 40\naction = "kill"', "must be <= 30"),
    ('[[events]]\nat = 1\naction = "partition"', "needs ['duration_s']"),
    ('[[events]]\nat = 25\naction = "partition"\nduration_s = 10', "runs past the end"),
    ('[[events]]\nat = 1\naction = "kill"\ngroup = "c"', "no group ['c']"),
    ('[[events]]\nat = 1\naction = "kill"\ndevices = ["pi-1"]', "no devices ['pi-1']"),
    ('[[events]]\nat = 1\naction = "kill"\ncount = 2\nfraction = 0.5', "not both"),
    ('[[events]]\nat = 1\naction = "clock_skew"\nskew_s = 5\ngroup = "a"', "whole simulation"),
    ('[[events]]\nat = 1\naction = "drift"\nkind = "covariate_shift"', "needs features"),
    ('[[events]]\nat = 1\naction = "drift"\nkind = "sensor_offset"\nfeatures = [0]', "offset"),
    ('[[events]]\nat = 1\naction = "lossy_link"\nduration_s = 2\nloss = 2', "must be <= 1"),
    ('[workload]\nrate_per_device = "fast"', "must be a number"),
    ('[workload]\ndataset = "wine"', "same shape"),
    ('[model]\nestimator = "svm"', "must be one of"),
    ('[expect]\nalerts = "drift"', "list of alert kinds"),
    ('bogus = 1', "unknown keys ['bogus']"),
])
def test_mistakes_are_refused_with_the_key_and_a_fix(extra: str, words: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(BASE + extra, source="x.toml")
    assert words in str(err.value)
    assert str(err.value).startswith("x.toml: ")


def test_fleet_mistakes() -> None:
    with pytest.raises(ScenarioError, match="at least one group"):
        parse_scenario('name = "t"')
    with pytest.raises(ScenarioError, match="defined twice"):
        parse_scenario('[[fleet]]\nname = "a"\n[[fleet]]\nname = "a"')
    with pytest.raises(ScenarioError, match="unknown keys"):
        parse_scenario('[[fleet]]\nname = "a"\n[fleet.agent]\nturbo = true')
    with pytest.raises(ScenarioError, match="not valid TOML"):
        parse_scenario("[[fleet]\n")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="does not exist"):
        load_scenario(tmp_path / "nope.toml")


def test_selection_by_group_labels_ids_and_samples_is_deterministic() -> None:
    devices = [(f"d{i}", "a" if i < 4 else "b", {"site": "berlin" if i < 4 else "oslo",
                                                 "hw": "pi5" if i % 2 else "pi4"})
               for i in range(10)]
    assert select(Selector(), devices, random.Random(0)) == [f"d{i}" for i in range(10)]
    assert select(Selector(groups=("a",)), devices, random.Random(0)) == ["d0", "d1", "d2", "d3"]
    assert select(Selector(labels={"site": "oslo", "hw": "pi5"}), devices,
                  random.Random(0)) == ["d5", "d7", "d9"]
    assert select(Selector(devices=("d3", "d8")), devices, random.Random(0)) == ["d3", "d8"]
    sample = select(Selector(groups=("b",), count=3), devices, random.Random(7))
    assert len(sample) == 3 and set(sample) <= {f"d{i}" for i in range(4, 10)}
    assert sample == select(Selector(groups=("b",), count=3), devices, random.Random(7))
    assert sample == sorted(sample, key=lambda d: int(d[1:]))  # fleet order is kept
    assert len(select(Selector(fraction=0.5), devices, random.Random(1))) == 5
    assert select(Selector(count=50), devices, random.Random(1)) == [f"d{i}" for i in range(10)]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_scenario_loads(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.events, "a shipped scenario has a timeline"
    assert scenario.description


def test_scenarios_are_shipped() -> None:
    assert len(SHIPPED) >= 2
