"""ErrorRateDetector and MeanShiftDetector: false alarms on no-change streams, detection, state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgewise_monitoring.accuracy_test import (
    ErrorRateDetector,
    ErrorRateSettings,
    binomial_lower_tail_test,
)
from edgewise_monitoring.regression_test import MeanShiftDetector, MeanShiftSettings

LABELS = 100_000
WINDOW = 500


def _reference(rng: np.random.Generator, error: float, m: int = 5000) -> float:
    """A reference accuracy as the converter measures it: on m labelled rows."""
    return 1.0 - rng.binomial(m, error) / m


@pytest.mark.parametrize("seed", range(5))
def test_window_level_no_false_alarm_in_100k_labels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    det = ErrorRateDetector.from_accuracy(_reference(rng, 0.1), 5000)
    alarms = sum(det.update(int(rng.binomial(WINDOW, 0.1)), WINDOW).alarm
                 for _ in range(LABELS // WINDOW))
    assert alarms == 0


@pytest.mark.parametrize("seed", range(2))
def test_per_label_no_false_alarm_in_100k_labels(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    det = ErrorRateDetector.from_accuracy(_reference(rng, 0.2), 5000)
    assert det.update_labels(rng.random(LABELS) < 0.2) == []


def test_measured_rate_within_the_bound_at_a_loose_alpha() -> None:
    """alpha = 1e-3 per label allows up to 100 alarms per 100,000 labels; a model exactly at its
    reference (the boundary of the null once tolerance and reference error are spent) gives
    far fewer."""
    rng = np.random.default_rng(7)
    settings = ErrorRateSettings(alpha=1e-3, tolerance=0.0)
    det = ErrorRateDetector(0.1, None, settings)  # no reference slack: the harshest case
    alarms = [d for d in det.update_labels(rng.random(LABELS) < 0.1) if d.alarm]
    assert len(alarms) <= 100


def test_a_model_within_tolerance_is_not_reported() -> None:
    rng = np.random.default_rng(8)
    det = ErrorRateDetector(0.10, 5000, ErrorRateSettings(tolerance=0.02))
    assert not any(det.update(int(rng.binomial(WINDOW, 0.11)), WINDOW).alarm
                   for _ in range(400))


def _labels_to_alarm(seed: int, after: float, per_label: bool) -> int | None:
    rng = np.random.default_rng(seed)
    det = ErrorRateDetector.from_accuracy(_reference(rng, 0.1), 5000)
    if per_label:
        det.update_labels(rng.random(2000) < 0.1)
        alarms = det.update_labels(rng.random(5000) < after)
        first = [d for d in alarms if d.alarm]
        return first[0].explanation["label_index"] + 1 if first else None
    for _ in range(4):
        det.update(int(rng.binomial(WINDOW, 0.1)), WINDOW)
    for w in range(1, 60):
        if det.update(int(rng.binomial(WINDOW, after)), WINDOW).alarm:
            return w * WINDOW
    return None


def test_abrupt_concept_change_is_caught_within_a_few_dozen_labels() -> None:
    delays = [_labels_to_alarm(s, 0.5, per_label=True) for s in range(5)]
    assert all(d is not None and d <= 100 for d in delays)


def test_five_point_loss_is_reported_once_enough_labels_prove_it() -> None:
    delays = [_labels_to_alarm(s, 0.15, per_label=False) for s in range(5)]
    assert all(d is not None for d in delays)
    assert float(np.median([d for d in delays if d is not None])) <= 6000


def test_alarm_explains_itself_and_state_round_trips() -> None:
    rng = np.random.default_rng(3)
    det = ErrorRateDetector.from_accuracy(0.9, 2000)
    det.update(50, 500)
    clone = ErrorRateDetector.from_dict(json.loads(json.dumps(det.to_dict())))
    d1, d2 = det.update(150, 500), clone.update(150, 500)
    assert d1.alarm and d2.alarm and d1.score == d2.score
    ex = d1.to_dict()["explanation"]
    json.dumps(d1.to_dict(), allow_nan=False)
    assert ex["null_error"] > 0.1 and ex["leader"]["run_error_rate"] >= 0.15
    assert "above the reference" in d1.detail
    assert rng is not None


def test_bad_counts_raise_and_no_labels_judges_nothing() -> None:
    det = ErrorRateDetector(0.1, 100)
    with pytest.raises(ValueError):
        det.update(5, 3)
    d = det.update(0, 0)
    assert not d.judged and not d.alarm


def _abs_errors(rng: np.random.Generator, n: int, kind: str, scale: float = 1.0) -> np.ndarray:
    if kind == "normal":
        return np.abs(rng.normal(0, scale, n))
    return np.abs(rng.laplace(0, scale, n))


@pytest.mark.parametrize("kind", ["normal", "laplace"])
def test_mae_test_no_false_alarm_in_100k_labels(kind: str) -> None:
    for seed in range(3):
        rng = np.random.default_rng(seed)
        ref = _abs_errors(rng, 5000, kind)
        det = MeanShiftDetector(float(ref.mean()), float(ref.std()), 5000, name="mae")
        for _ in range(LABELS // WINDOW):
            e = _abs_errors(rng, WINDOW, kind)
            assert not det.update(WINDOW, float(e.sum()), float((e**2).sum())).alarm


def test_mae_test_false_alarm_rate_at_a_loose_alpha_is_within_bound() -> None:
    """alpha = 1e-3 per label: at most 100 alarms per 100,000 labels allowed; the CLT e-value
    on skewed absolute errors (Laplace) must stay within it."""
    alarms = 0
    for seed in range(3):
        rng = np.random.default_rng(seed)
        ref = _abs_errors(rng, 5000, "laplace")
        det = MeanShiftDetector(float(ref.mean()), float(ref.std()), None,
                                MeanShiftSettings(alpha=1e-3, tolerance=0.0), name="mae")
        for _ in range(LABELS // 100):
            e = _abs_errors(rng, 100, "laplace")
            alarms += det.update(100, float(e.sum()), float((e**2).sum())).alarm
    assert alarms / 3 <= 100


def test_bias_test_sees_a_target_shift_in_either_direction() -> None:
    for sign in (1.0, -1.0):
        rng = np.random.default_rng(4)
        ref = rng.normal(0, 1, 5000)
        det = MeanShiftDetector(float(ref.mean()), float(ref.std()), 5000, direction="both",
                                name="bias")
        e = rng.normal(sign * 0.5, 1, WINDOW)
        d = det.update(WINDOW, float(e.sum()), float((e**2).sum()))
        assert d.alarm and d.explanation["leader"]["direction"] == ("up" if sign > 0 else "down")


def test_mae_test_pools_small_windows_and_round_trips() -> None:
    det = MeanShiftDetector(1.0, 0.5, 1000, name="mae")
    d = det.update(10, 10.0, 12.0)
    assert not d.judged and "pending" in d.detail
    clone = MeanShiftDetector.from_dict(json.loads(json.dumps(det.to_dict())))
    a, b = det.update(30, 60.0, 130.0), clone.update(30, 60.0, 130.0)
    assert a.judged and a.alarm and a.score == b.score


def test_fixed_sample_binomial_check() -> None:
    assert binomial_lower_tail_test(850, 1000, 0.9) < 1e-6
    assert binomial_lower_tail_test(900, 1000, 0.9) == pytest.approx(0.5, abs=0.02)


def test_degenerate_references_do_not_break_the_tests() -> None:
    """A reference with no error at all (a model scored on its training data) and a regression
    reference without a spread (an older profile): no exception, a usable null."""
    perfect = ErrorRateDetector(0.0, None)
    assert perfect.null_error > 0
    assert perfect.update(0, 500).judged
    assert perfect.update(50, 500).alarm  # 10% errors against a perfect reference: proved
    old = MeanShiftDetector(0.8, None, None, name="mae")
    assert old.margin == pytest.approx(0.04)  # 5% of the reference MAE
    rng = np.random.default_rng(9)
    for _ in range(200):
        e = np.abs(rng.normal(0, 1, WINDOW))  # mean 0.80, the reference
        assert not old.update(WINDOW, float(e.sum()), float((e**2).sum())).alarm
