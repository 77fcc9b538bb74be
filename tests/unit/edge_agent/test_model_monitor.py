"""The agent's window keeper: windows per model version, rolled on time, never breaking a call."""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_agent.model_monitor import ModelMonitor
from tests.harness.profiles import make_profile
from tests.integration.controller.store.conftest import build_manifest

REF = np.random.default_rng(0).normal(size=(1000, 2))
MANIFEST = dataclasses.replace(build_manifest(b"m"), version=1,
                               reference_profile=make_profile(REF, (REF[:, 0] > 0).astype(int),
                                                              labels=[0, 1]))


def observe(monitor: ModelMonitor, n: int) -> None:
    x = np.random.default_rng(1).normal(size=(n, 2)).astype(np.float32)
    pred = (x[:, 0] > 0).astype(np.int64)
    monitor.observe(x, pred, np.column_stack([1.0 - pred, pred]).astype(np.float32), 0.5)


def test_no_window_without_a_model_and_one_per_switch() -> None:
    monitor = ModelMonitor(60.0)
    assert monitor.close(0.0) is None and not monitor.due(1e9)
    assert monitor.switch(MANIFEST, now=100.0, mono=0.0) is None
    observe(monitor, 10)
    record = monitor.switch(dataclasses.replace(MANIFEST, version=2), now=130.0, mono=30.0)
    assert record is not None and record["kind"] == "metrics"
    assert (record["model"], record["version"]) == ("iris", 1)
    assert record["summary"]["count"] == 10 and record["summary"]["end_ts"] == 130.0
    assert monitor.version == 2 and monitor.window is not None and monitor.window.count == 0


def test_roll_on_time_keeps_windows_contiguous() -> None:
    monitor = ModelMonitor(60.0)
    monitor.switch(MANIFEST, now=0.0, mono=0.0)
    assert not monitor.due(59.9) and monitor.due(60.0)
    observe(monitor, 5)
    first = monitor.roll(now=60.0, mono=60.0)
    observe(monitor, 3)
    second = monitor.roll(now=120.0, mono=120.0)
    assert first is not None and second is not None
    assert (first["summary"]["count"], second["summary"]["count"]) == (5, 3)
    assert first["summary"]["end_ts"] == second["summary"]["start_ts"] == 60.0
    assert not monitor.due(179.0) and monitor.due(180.0)


def test_calls_and_labels_it_cannot_account_for_are_counted_not_raised() -> None:
    monitor = ModelMonitor(60.0)
    monitor.switch(MANIFEST, now=0.0, mono=0.0)
    monitor.observe(np.zeros((3, 5)), np.zeros(3), None, 1.0)  # 5 features, profile has 2
    monitor.drain()  # calls are buffered until a summary (or a full buffer)
    monitor.observe_feedback("iris", 1, 1, {"not": "a label"})
    monitor.observe_feedback("iris", 9, 1, 1)  # a prediction of another version
    assert monitor.stats["calls_not_monitored"] == 1
    assert monitor.stats["feedback_not_scored"] == 1
    assert monitor.stats["feedback_other_version"] == 1
    assert monitor.window is not None and monitor.window.count == 0


def test_an_unusable_profile_still_gives_windows_without_drift() -> None:
    broken = dataclasses.replace(MANIFEST, reference_profile={"n": "many"})
    monitor = ModelMonitor(60.0)
    monitor.switch(broken, now=0.0, mono=0.0)
    assert monitor.stats["warning_profile"] == 1
    observe(monitor, 4)
    record = monitor.close(1.0)
    assert record is not None and record["summary"]["count"] == 4
    assert record["summary"]["features"] == []


def test_buffered_calls_give_the_same_window_as_calls_observed_one_by_one() -> None:
    """Calls are accounted for in batches (the cost of a histogram update is per call, not per
    row); the summary must be exactly what observing every call on its own gives."""
    from edge_agent.model_monitor import MAX_BUFFERED_CALLS
    from edgewise_monitoring import MonitoringWindow

    rng = np.random.default_rng(7)
    monitor = ModelMonitor(60.0)
    monitor.switch(MANIFEST, now=0.0, mono=0.0)
    direct = MonitoringWindow(MANIFEST.reference_profile, MANIFEST.task, MANIFEST.class_labels,
                              start_ts=0.0, embed_reference=False)
    for i in range(MAX_BUFFERED_CALLS + 37):  # one automatic drain, and a remainder
        rows = 1 + i % 3
        x = rng.normal(size=(rows, 2)).astype(np.float32)
        pred = (x[:, 0] > 0).astype(np.int64)
        scores = np.column_stack([1.0 - pred * 0.9, pred * 0.9]).astype(np.float32)
        latency = float(rng.uniform(0.1, 30.0))
        monitor.observe(x, pred, scores, latency)
        direct.observe(x, pred, scores, latency)
    record = monitor.close(10.0)
    assert record is not None
    # equal but for the order of float additions (the latency sum)
    assert _rounded(record["summary"]) == _rounded(direct.summary(10.0))


def _rounded(value: object) -> object:
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
