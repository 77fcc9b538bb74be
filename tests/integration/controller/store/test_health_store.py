"""Health windows at the controller, on both backends: stored once with the batch, implausible
gauges left out and counted, history, newest window per device, a version's cost per device."""

from __future__ import annotations

from typing import Any

import pytest

from controller.device_health.store import HealthStore
from controller.device_health.views import DeviceHealthViews
from controller.errors import NotFoundError
from controller.fleet.telemetry_store import TelemetryStore
from controller.storage.db import Database
from edgewise_wire import TelemetryBatch

MIB = 1024 * 1024


def health(seq: int, start: float, *, rss: float = 50 * MIB, temp: float | None = 55.0,
           model: str | None = "iris", version: int = 1, session: float = 2 * MIB,
           predictions: int = 100, cpu_s: float = 0.05, **extra: Any) -> dict[str, Any]:
    gauges: dict[str, Any] = {"rss_bytes": [rss, rss, rss + MIB],
                              "disk_free_bytes": [5e9, 5e9, 5e9]}
    if temp is not None:
        gauges["temp_c"] = [temp - 1, temp, temp]
    r: dict[str, Any] = {"seq": seq, "kind": "health", "ts": start + 60, "start_ts": start,
                         "samples": 12, "gauges": gauges, "disk_total_bytes": 1e10,
                         "agent_started_ts": 1000.0, "reconnects": 0, **extra}
    if model is not None:
        r.update(model=model, version=version,
                 cost={"session_bytes": session, "predictions": predictions, "cpu_s": cpu_s})
    return r


@pytest.fixture
def stores(db: Database) -> tuple[TelemetryStore, HealthStore]:
    store = HealthStore(db)
    return TelemetryStore(db, health=store.store_windows), store


def test_windows_are_stored_once_with_their_batch(stores: tuple[TelemetryStore, HealthStore]
                                                  ) -> None:
    telemetry, store = stores
    batch = TelemetryBatch(1, 2, [health(1, 2000.0), health(2, 2060.0, rss=60 * MIB)], epoch=7)
    assert telemetry.store_batch("pi-1", batch, 2200.0) == 2
    assert telemetry.store_batch("pi-1", batch, 2201.0) == 0  # a replayed batch
    history = store.history("pi-1", 0.0)
    assert [w["rss_bytes"] for w in history] == [50 * MIB, 60 * MIB]
    assert history[1]["rss_max_bytes"] == 61 * MIB and history[1]["temp_c"] == 55.0
    assert history[0]["gauges"]["temp_c"] == [54.0, 55.0, 55.0]
    assert store.stats["health_windows_stored"] == 2
    assert set(store.latest()) == {"pi-1"} and store.latest()["pi-1"]["window_end"] == 2120.0


def test_absurd_values_are_left_out_and_counted(stores: tuple[TelemetryStore, HealthStore]
                                                ) -> None:
    telemetry, store = stores
    bad = health(1, 2000.0, temp=1000.0)
    bad["gauges"]["rss_bytes"] = [-5, 1, 2]
    no_window = {"seq": 2, "kind": "health", "ts": 5.0, "start_ts": 9.0}
    assert telemetry.store_batch("pi-1", TelemetryBatch(1, 2, [bad, no_window]), 2200.0) == 2
    [window] = store.history("pi-1", 0.0)
    assert window["temp_c"] is None and window["rss_bytes"] is None
    assert window["disk_free_bytes"] == 5e9
    assert "temp_c: outside [-60, 150]" in window["rejected"]
    assert store.stats["health_field_rejected: temp_c"] == 1
    assert store.stats["health_field_rejected: rss_bytes"] == 1
    assert store.stats["health_invalid"] == 1  # kept in telemetry, not a window


def test_a_versions_cost_per_device(stores: tuple[TelemetryStore, HealthStore]) -> None:
    telemetry, store = stores
    telemetry.store_batch("pi-1", TelemetryBatch(1, 3, [
        health(1, 2000.0, version=1, session=2 * MIB, predictions=100, cpu_s=0.1),
        health(2, 2060.0, version=2, session=6 * MIB, predictions=50, cpu_s=0.1),
        health(3, 2120.0, version=2, session=6 * MIB, predictions=150, cpu_s=0.3)]), 2200.0)
    telemetry.store_batch("pi-2", TelemetryBatch(1, 1, [health(1, 2000.0, model=None)]), 2200.0)
    costs = store.version_costs(["pi-1", "pi-2"], "iris", 2, 0.0)
    assert set(costs) == {"pi-1"}
    assert costs["pi-1"].session_bytes == 6 * MIB
    assert costs["pi-1"].cpu_ms_per_prediction == pytest.approx(2.0)  # 0.4 s / 200
    assert store.version_costs(["pi-1"], "iris", 2, 2200.0) == {}  # none since then
    view = DeviceHealthViews(store, clock=lambda: 2200.0).device("pi-1", 0.0)
    assert [(v["version"], v["session_bytes"]) for v in view["versions"]] == [
        (1, 2 * MIB), (2, 6 * MIB)]
    assert view["versions"][1]["cpu_ms_per_prediction"] == pytest.approx(2.0)
    with pytest.raises(NotFoundError):
        DeviceHealthViews(store).device("nobody", 0.0)


def test_the_baseline_is_the_version_each_device_served_before(
        stores: tuple[TelemetryStore, HealthStore]) -> None:
    telemetry, store = stores
    telemetry.store_batch("pi-1", TelemetryBatch(1, 3, [
        health(1, 1000.0, version=1, session=2 * MIB, predictions=10, cpu_s=0.01),
        health(2, 2000.0, version=2, session=8 * MIB),
        health(3, 3000.0, version=3, session=3 * MIB)]), 4000.0)
    telemetry.store_batch("pi-2", TelemetryBatch(1, 1, [health(1, 1000.0, version=3)]), 4000.0)
    # rolling out v3 at 2500: pi-1 served v2 just before; pi-2 served only v3
    base = store.baseline_costs(["pi-1", "pi-2"], "iris", 3, 0.0, 2500.0)
    assert set(base) == {"pi-1"} and base["pi-1"].session_bytes == 8 * MIB
    base = store.baseline_costs(["pi-1"], "iris", 3, 0.0, 1500.0)
    assert base["pi-1"].session_bytes == 2 * MIB
    assert base["pi-1"].cpu_ms_per_prediction == pytest.approx(1.0)
