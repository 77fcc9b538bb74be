"""The health sampler on fake /proc and /sys trees: readings, absent sensors, garbage, windows."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from edge_agent.health.readings import (
    first_float,
    meminfo_bytes,
    millidegrees,
    rss_bytes_from_statm,
    throttled_bits,
)
from edge_agent.health.sampler import HealthSampler
from edge_agent.health.sources import PI_THROTTLED, HealthSources
from edge_agent.health.window import HealthWindow
from edgewise_wire.health import THROTTLED_NOW, describe_throttled, parse_health

MIB = 1024 * 1024


class FakeStatvfs:
    def __init__(self, free_blocks: int, blocks: int, frsize: int = 4096) -> None:
        self.f_bavail, self.f_blocks, self.f_frsize = free_blocks, blocks, frsize


def fake_tree(tmp_path: Path, *, temps: list[str] | None = None, throttled: str | None = None,
              rss_pages: int = 2560, mem_available_kb: int = 512_000) -> tuple[Path, Path]:
    proc, sys = tmp_path / "proc", tmp_path / "sys"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "statm").write_text(f"10000 {rss_pages} 300 1 0 2000 0\n")
    (proc / "meminfo").write_text(f"MemTotal:        1024000 kB\nMemFree:  1000 kB\n"
                                  f"MemAvailable:    {mem_available_kb} kB\n")
    (proc / "loadavg").write_text("0.52 0.40 0.30 1/123 4567\n")
    (proc / "uptime").write_text("3600.25 7000.00\n")
    for i, temp in enumerate(temps or []):
        zone = sys / "class" / "thermal" / f"thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "temp").write_text(temp)
    if throttled is not None:
        path = sys / PI_THROTTLED
        path.parent.mkdir(parents=True)
        path.write_text(throttled)
    sys.mkdir(exist_ok=True)
    return proc, sys


def sources(tmp_path: Path, disk: FakeStatvfs | None = None, **tree: Any) -> HealthSources:
    proc, sys = fake_tree(tmp_path, **tree)
    stat = disk or FakeStatvfs(1000, 10_000)
    return HealthSources(tmp_path, proc=proc, sys=sys, page_size=4096,
                         statvfs=lambda _path: stat,  # type: ignore[arg-type,return-value]
                         cpu_s=lambda: 1.5)


def test_a_pi_at_85_degrees_throttling_with_a_full_disk(tmp_path: Path) -> None:
    src = sources(tmp_path, disk=FakeStatvfs(0, 10_000), temps=["54000\n", "85000\n"],
                  throttled="0x50005\n")
    reading = src.read()
    assert reading["temp_c"] == 85.0  # the hottest zone
    assert reading["throttled"] == 0x50005
    assert describe_throttled(int(reading["throttled"])) == ["under-voltage", "throttled"]
    assert reading["disk_free_bytes"] == 0
    assert reading["disk_total_bytes"] == 10_000 * 4096
    assert reading["rss_bytes"] == 2560 * 4096
    assert reading["mem_available_bytes"] == 512_000 * 1024
    assert reading["load1"] == 0.52 and reading["uptime_s"] == 3600.25
    assert not src.problems


def test_a_board_without_sensors_has_no_temperature_and_no_throttling(tmp_path: Path) -> None:
    reading = sources(tmp_path).read()
    assert "temp_c" not in reading and "throttled" not in reading
    assert "rss_bytes" in reading


def test_garbage_files_are_counted_and_left_out(tmp_path: Path) -> None:
    src = sources(tmp_path, temps=["hot\n"], throttled="throttled=zz\n")
    (tmp_path / "proc" / "loadavg").write_text("")
    (tmp_path / "proc" / "self" / "statm").write_bytes(b"\xff\xfe")
    reading = src.read()
    for name in ("temp_c", "throttled", "load1", "rss_bytes"):
        assert name not in reading
    assert src.problems == {"thermal: garbage": 1, "get_throttled: garbage": 1,
                            "loadavg: garbage": 1, "statm: UnicodeDecodeError": 1}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without permission")
def test_an_unreadable_file_is_counted(tmp_path: Path) -> None:
    src = sources(tmp_path, temps=["50000"])
    zone = tmp_path / "sys" / "class" / "thermal" / "thermal_zone0" / "temp"
    zone.chmod(0)
    assert "temp_c" not in src.read()
    assert src.problems == {"thermal: PermissionError": 1}


def test_a_disk_that_cannot_be_queried_leaves_disk_out(tmp_path: Path) -> None:
    proc, sys = fake_tree(tmp_path)

    def broken(_path: str) -> os.statvfs_result:
        raise OSError("gone")

    src = HealthSources(tmp_path, proc=proc, sys=sys, statvfs=broken)
    assert "disk_free_bytes" not in src.read()
    assert src.problems == {"statvfs: OSError": 1}


def test_the_real_proc_of_this_process(tmp_path: Path) -> None:
    reading = HealthSources(tmp_path).read()
    st = os.statvfs(tmp_path)
    assert reading["rss_bytes"] > 10 * MIB
    assert abs(reading["disk_free_bytes"] - st.f_bavail * st.f_frsize) < 64 * MIB
    assert reading["mem_available_bytes"] <= reading["mem_total_bytes"]


@pytest.mark.parametrize(("parse", "text", "expected"), [
    (lambda t: rss_bytes_from_statm(t, 4096), "1 2 3", 8192),
    (lambda t: rss_bytes_from_statm(t, 4096), "1", None),
    (lambda t: meminfo_bytes(t, "MemAvailable"), "MemAvailable: 12 kB", 12 * 1024),
    (lambda t: meminfo_bytes(t, "MemAvailable"), "MemAvailable: lots", None),
    (lambda t: meminfo_bytes(t, "MemAvailable"), "MemTotal: 12 kB", None),
    (first_float, "nan 1 2", None),
    (first_float, "-1", None),
    (millidegrees, "-5000", -5.0),
    (millidegrees, "", None),
    (throttled_bits, "throttled=0x4", THROTTLED_NOW),
    (throttled_bits, "262144", 1 << 18),
    (throttled_bits, "0x1ffffffff", None),
])
def test_parsers(parse: Any, text: str, expected: float | None) -> None:
    assert parse(text) == expected


def test_a_window_summarises_min_mean_max_and_the_model_cost() -> None:
    window = HealthWindow(100.0, "iris", 2, session_bytes=3 * MIB)
    for rss, temp in ((10 * MIB, 50.0), (14 * MIB, 60.0), (12 * MIB, 55.0)):
        window.add({"rss_bytes": rss, "temp_c": temp, "uptime_s": 5.0, "throttled": 0})
    window.add({"rss_bytes": 12 * MIB, "throttled": THROTTLED_NOW})
    window.observe_call(10, 5.0, 0.002)
    window.observe_call(30, 15.0, 0.006)
    window.observe_call(40, 20.0)  # not timed: its CPU time is extrapolated per row
    record = window.record(160.0, reconnects=1, agent_started_ts=90.0, has_throttling=True)
    assert record["gauges"]["rss_bytes"] == [10 * MIB, 12 * MIB, 14 * MIB]
    assert record["gauges"]["temp_c"] == [50.0, 55.0, 60.0]  # three samples had it
    assert record["throttled"] == THROTTLED_NOW
    assert record["cost"] == {"predictions": 80, "cpu_s": pytest.approx(0.016),
                              "latency_ms": 0.5, "session_bytes": 3 * MIB}
    parsed = parse_health(record)
    assert parsed.rejected == [] and parsed.model == "iris" and parsed.version == 2
    assert parsed.scalars["reconnects"] == 1


def test_a_window_without_a_model_has_no_cost_and_no_throttling_on_boards_without() -> None:
    window = HealthWindow(0.0)
    window.add({"rss_bytes": 1.0})
    record = window.record(1.0, reconnects=0, agent_started_ts=0.0, has_throttling=False)
    assert "cost" not in record and "model" not in record and "throttled" not in record


def test_the_sampler_derives_cpu_percent_and_counts_reconnects(tmp_path: Path) -> None:
    cpu = iter([1.0, 1.5, 2.5])
    proc, sys = fake_tree(tmp_path)
    src = HealthSources(tmp_path, proc=proc, sys=sys, cpu_s=lambda: next(cpu))
    sampler = HealthSampler(src, sample_s=5.0, window_s=30.0, started_ts=7.0, now=1000.0,
                            mono=0.0)
    assert sampler.due(0.0)
    sampler.sample(0.0, {"outbox_backlog": 3}, connects=1)
    assert not sampler.due(4.9) and sampler.due(5.0)
    sampler.sample(5.0, {"outbox_backlog": 5}, connects=2)
    sampler.sample(10.0, {}, connects=3)
    assert not sampler.closing(29.0) and sampler.closing(30.0)
    record = sampler.roll(1030.0, 30.0, connects=3)
    assert record is not None
    assert record["gauges"]["cpu_percent"] == [10.0, 15.0, 20.0]  # 0.5 s, then 1 s in 5 s
    assert record["gauges"]["outbox_backlog"] == [3, 4.0, 5]
    assert record["reconnects"] == 2 and record["agent_started_ts"] == 7.0
    assert record["start_ts"] == 1000.0 and record["ts"] == 1030.0
    assert sampler.roll(1060.0, 60.0, connects=3) is None  # no sample: no record


def test_a_model_switch_closes_the_window_and_opens_one_for_the_new_version(
        tmp_path: Path) -> None:
    sampler = HealthSampler(sources(tmp_path), sample_s=1.0, window_s=60.0, started_ts=0.0,
                            now=0.0, mono=0.0)
    sampler.sample(0.0, {}, connects=1)
    assert sampler.switch(10.0, 10.0, 1, "iris", 3, 5 * MIB) is not None
    sampler.sample(11.0, {}, connects=1)
    record = sampler.roll(20.0, 20.0, 1)
    assert record is not None and (record["model"], record["version"]) == ("iris", 3)
    assert record["cost"]["session_bytes"] == 5 * MIB
    assert sampler.window.version == 3  # the next window keeps the model


def test_one_call_in_sixteen_has_its_cpu_time_read(tmp_path: Path) -> None:
    from edge_agent.health.sampler import COST_SAMPLE

    sampler = HealthSampler(sources(tmp_path), sample_s=1.0, window_s=60.0, started_ts=0.0,
                            now=0.0, mono=0.0)
    timed = [sampler.time_this_call() for _ in range(3 * COST_SAMPLE)]
    assert [i for i, t in enumerate(timed) if t] == [0, COST_SAMPLE, 2 * COST_SAMPLE]
