"""The health alerts: each fires on the fault it names, not on noise, and clears after it."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from controller.device_health.rules import (
    HealthPoint,
    HealthThresholds,
    device_alerts,
    evaluate,
)
from edgewise_wire.health import THROTTLED_NOW, THROTTLED_SEEN

MIB = 1024 * 1024
T = HealthThresholds()


def point(i: int, **fields: Any) -> HealthPoint:
    base: dict[str, Any] = dict(
        device_id="pi-1", start=i * 60.0, end=(i + 1) * 60.0, model="iris", version=1,
        rss_bytes=50 * MIB, disk_free_bytes=5e9, disk_total_bytes=1e10, temp_c=55.0,
        throttled=0, outbox_backlog=0.0, reconnects=0, agent_started_ts=0.0)
    base.update(fields)
    return HealthPoint(**base)


def kinds(windows: list[HealthPoint], now: float | None = None) -> list[str]:
    return [a.kind for a in device_alerts(windows, now if now is not None
                                          else windows[-1].end, T)]


def test_a_healthy_device_has_no_alert() -> None:
    assert kinds([point(i) for i in range(300)]) == []


def test_disk_nearly_full_fires_and_clears() -> None:
    full = [point(0), point(1, disk_free_bytes=100 * MIB)]
    [alert] = device_alerts(full, full[-1].end, T)
    assert alert.kind == "disk_nearly_full" and "100.0 MiB free" in alert.explanation
    assert kinds(full + [point(2)]) == []
    assert kinds([point(0, disk_free_bytes=3e8, disk_total_bytes=1e10)]) == [
        "disk_nearly_full"]  # 3% of the disk, though over 200 MiB


def test_heat_or_throttling_fires_and_clears() -> None:
    assert kinds([point(0, temp_c=85.0)]) == ["overheating"]
    [alert] = device_alerts([point(0, temp_c=70.0, throttled=THROTTLED_NOW | THROTTLED_SEEN)],
                            60.0, T)
    assert "throttled now" in alert.explanation
    assert kinds([point(0, throttled=THROTTLED_SEEN)]) == []  # only in the past
    assert kinds([point(0, temp_c=85.0), point(1, temp_c=60.0)]) == []
    assert kinds([point(0, temp_c=None, throttled=None)]) == []  # a board without sensors


def test_a_steady_memory_growth_is_a_leak_and_a_spike_is_not() -> None:
    rng = random.Random(1)
    leak = [point(i, rss_bytes=50 * MIB + i * 0.05 * MIB + rng.uniform(-0.2, 0.2) * MIB)
            for i in range(240)]  # 3 MiB/h for 4 h with noise
    [alert] = device_alerts(leak, leak[-1].end, T)
    assert alert.kind == "memory_leak" and 2.5 * MIB < alert.value < 3.5 * MIB
    spike = [point(i, rss_bytes=(80 if i == 230 else 50) * MIB) for i in range(240)]
    assert kinds(spike) == []
    noise = [point(i, rss_bytes=50 * MIB + rng.uniform(-2, 2) * MIB) for i in range(240)]
    assert kinds(noise) == []
    short = leak[:60]  # one hour: not enough to call it a leak
    assert kinds(short) == []
    # a restart starts over: memory measured since the new process only
    restarted = leak + [point(240 + i, agent_started_ts=99.0, rss_bytes=50 * MIB)
                        for i in range(10)]
    assert "memory_leak" not in kinds(restarted)


def test_a_growing_backlog_fires_and_a_draining_one_does_not() -> None:
    assert kinds([point(0, outbox_backlog=20_000.0), point(1, outbox_backlog=30_000.0)]) == [
        "outbox_backlog"]
    assert kinds([point(0, outbox_backlog=30_000.0), point(1, outbox_backlog=20_000.0)]) == []
    assert kinds([point(0, outbox_backlog=500.0), point(1, outbox_backlog=900.0)]) == []


def test_reconnect_storms_and_restarts_within_the_last_hour() -> None:
    flapping = [point(i, reconnects=1) for i in range(12)]
    assert kinds(flapping) == ["reconnect_storm"]
    assert kinds(flapping, now=flapping[-1].end + 2 * 3600) == []  # an hour later: over
    restarting = [point(i, agent_started_ts=i * 60.0 + 1) for i in range(4)]
    assert kinds(restarting) == ["restarts"]
    assert kinds([point(0, agent_started_ts=30.0)]) == []


def test_evaluate_names_exactly_the_affected_devices() -> None:
    hot = [dataclasses.replace(point(0, temp_c=90.0), device_id="pi-hot")]
    fine = [dataclasses.replace(point(0), device_id="pi-ok")]
    alerts = evaluate({"pi-hot": hot, "pi-ok": fine}, 60.0, T)
    assert [(a.device_id, a.kind) for a in alerts] == [("pi-hot", "overheating")]


def test_thresholds_from_a_dict_refuse_unknown_and_negative() -> None:
    assert HealthThresholds.from_dict({"temp_c": 70}).temp_c == 70
    for bad in ({"tmp_c": 70}, {"temp_c": -1}, {"temp_c": True}):
        try:
            HealthThresholds.from_dict(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} was accepted")
