"""Simulated boards: each device its own plausible health readings, and the health faults as
trends on them (a device heating up and throttling, a leak, a disk filling), ended by heal."""

from __future__ import annotations

import pytest

from edgewise_wire.health import SOFT_TEMP_LIMIT_SEEN, THROTTLED_NOW, THROTTLED_SEEN, parse_health
from simulator.boards import MIB, SimulatedBoard
from simulator.scenario import ScenarioError, parse_scenario


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_devices_differ_and_read_like_a_pi() -> None:
    clock = Clock()
    a, b = SimulatedBoard("sim-0001", clock), SimulatedBoard("sim-0002", clock)
    ra, rb = a.read(), b.read()
    assert ra["rss_bytes"] != rb["rss_bytes"] and 50 * MIB < ra["rss_bytes"] < 62 * MIB
    assert 44 < ra["temp_c"] < 56 and ra["throttled"] == 0
    assert 0 < ra["disk_free_bytes"] < ra["disk_total_bytes"]
    assert SimulatedBoard("sim-0001", clock).base_rss == a.base_rss  # seeded by the device id


def test_heat_ramps_throttles_and_heals() -> None:
    clock = Clock()
    board = SimulatedBoard("sim-hot", clock)
    board.heat(85.0, ramp_s=30.0)
    clock.t += 15
    assert 60 < board.read()["temp_c"] < 75  # half way
    clock.t += 15
    reading = board.read()
    assert reading["temp_c"] >= 84.5 and int(reading["throttled"]) & THROTTLED_NOW
    board.heal()
    reading = board.read()
    assert reading["temp_c"] < 56
    assert reading["throttled"] == THROTTLED_SEEN | SOFT_TEMP_LIMIT_SEEN  # since boot, not now


def test_a_leak_and_a_filling_disk_are_trends() -> None:
    clock = Clock()
    board = SimulatedBoard("sim-leaky", clock)
    start = board.rss(clock.t)
    board.leak(2.0)
    board.fill_disk(100.0, ramp_s=60.0)
    clock.t += 60
    assert board.rss(clock.t) == pytest.approx(start + 2 * MIB)
    assert board.disk_free(clock.t) == 100 * MIB
    board.heal()
    assert board.rss(clock.t) == start and board.disk_free(clock.t) > 10_000 * MIB


def test_a_window_of_board_readings_is_a_valid_health_record() -> None:
    from edge_agent.health.sampler import HealthSampler

    clock = Clock()
    sampler = HealthSampler(SimulatedBoard("sim-x", clock), sample_s=1.0, window_s=10.0,
                            started_ts=0.0, now=0.0, mono=0.0)
    for i in range(5):
        sampler.sample(float(i), {}, connects=1)
    record = sampler.roll(10.0, 10.0, 1)
    assert record is not None and parse_health(record).rejected == []


BASE = """
name = "health"
duration_s = 60
[[fleet]]
name = "pi"
count = 4
"""


def test_health_fault_events_parse_and_refuse_nonsense() -> None:
    s = parse_scenario(BASE + """
[[events]]
at = 5
action = "heat"
temp_c = 85
count = 1
[[events]]
at = 6
action = "memory_leak"
mib_per_min = 3
[[events]]
at = 7
action = "fill_disk"
free_mib = 50
ramp_s = 10
[[events]]
at = 40
action = "heal"
""")
    assert [(e.action, e.param("ramp_s")) for e in s.events] == [
        ("heat", 30.0), ("memory_leak", None), ("fill_disk", 10), ("heal", None)]
    with pytest.raises(ScenarioError, match="temp_c"):
        parse_scenario(BASE + '[[events]]\nat = 1\naction = "heat"\ntemp_c = 500\n')
    with pytest.raises(ScenarioError, match="mib_per_min"):
        parse_scenario(BASE + '[[events]]\nat = 1\naction = "memory_leak"\nmib_per_min = -1\n')
