"""The window rules that remain beside the sequential tests: latency and silence."""

from __future__ import annotations

import dataclasses

from controller.monitoring import AlertKind, AlertRules, DeviceSeen, WindowObservation, judge_window
from controller.monitoring.rules import SEQUENTIAL_KINDS, judge_silence

RULES = AlertRules(latency_p95_ms=100, latency_min_predictions=20)
BASE = WindowObservation("d", "m", 1, 0.0, 60.0, predictions=500, p95_latency_ms=5.0)


def test_a_window_is_judged_on_latency_only() -> None:
    verdicts = judge_window(BASE, RULES)
    assert [v.kind for v in verdicts] == [AlertKind.LATENCY] and verdicts[0].bad is False


def test_latency_over_the_p95_bound_is_bad_with_enough_calls() -> None:
    (v,) = judge_window(dataclasses.replace(BASE, p95_latency_ms=150.0), RULES)
    assert v.bad and v.threshold == 100 and "150 ms" in v.detail
    (few,) = judge_window(dataclasses.replace(BASE, p95_latency_ms=150.0, predictions=5), RULES)
    assert few.bad is None


def test_silence_is_judged_only_for_devices_that_should_talk() -> None:
    rules = AlertRules(silent_after_s=60)
    assert judge_silence(DeviceSeen("d", 0.0, True, "iris", 1), 100.0, rules).bad
    assert not judge_silence(DeviceSeen("d", 0.0, True), 100.0, rules).bad  # runs no model
    assert judge_silence(DeviceSeen("d", 0.0, False), 100.0, rules).bad  # its will said offline
    assert not judge_silence(DeviceSeen("d", 90.0, True, "iris", 1), 100.0, rules).bad


def test_drift_accuracy_bias_concept_and_segments_are_left_to_the_sequential_tests() -> None:
    judged_by_windows = {v.kind for v in judge_window(BASE, RULES)} | {AlertKind.SILENT}
    assert judged_by_windows.isdisjoint(SEQUENTIAL_KINDS)
    assert judged_by_windows | SEQUENTIAL_KINDS == set(AlertKind)
