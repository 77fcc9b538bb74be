import numpy as np
import pytest

from edgewise_monitoring.psi import (
    DriftVerdict,
    drift_threshold,
    drift_verdict,
    psi,
    psi_noise_floor,
)
from tests.harness.profiles import quantile_bins


def _counts(edges: list[float], values: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


def test_psi_is_zero_for_identical_proportions() -> None:
    assert psi([0.25, 0.25, 0.5], [25, 25, 50]) == pytest.approx(0.0, abs=1e-12)


def test_psi_is_small_for_the_same_distribution() -> None:
    rng = np.random.default_rng(1)
    edges, props = quantile_bins(rng.normal(size=50_000))
    value = psi(props, _counts(edges, rng.normal(size=50_000)))
    assert value < 3 * psi_noise_floor(10, 50_000, 50_000) < 0.002


@pytest.mark.parametrize("delta", [0.25, 0.5, 1.0])
def test_psi_is_about_delta_squared_for_a_mean_shift(delta: float) -> None:
    # Ten decile bins lose a little information: measured ratios are 0.92-0.96.
    rng = np.random.default_rng(2)
    edges, props = quantile_bins(rng.normal(size=100_000))
    value = psi(props, _counts(edges, rng.normal(delta, 1.0, size=100_000)))
    assert value == pytest.approx(delta**2, rel=0.15)


def test_empty_bins_are_smoothed_not_infinite() -> None:
    value = psi([0.1] * 10, [0] + [10] * 9)
    # The empty bin contributes (0.1 - 1e-4) * ln(0.1 / 1e-4), about 0.69.
    assert np.isfinite(value)
    assert 0.6 < value < 0.9
    # A bin empty on both sides contributes nothing: the "other" bucket is free while unused.
    assert psi([0.5, 0.5], [5, 5, 0]) == pytest.approx(0.0, abs=1e-12)
    assert psi([0.5, 0.5], [5, 5, 3]) > 0.5


def test_psi_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        psi([0.5, 0.5], [0, 0])
    with pytest.raises(ValueError):
        psi([0.5, 0.5], [1, 2, 3, 4])
    with pytest.raises(ValueError):
        psi([0.5, 0.5], [1, -1])


def test_noise_floor_and_threshold_formulas() -> None:
    assert psi_noise_floor(10, 500, 5000) == pytest.approx(9 * (1 / 500 + 1 / 5000))
    assert drift_threshold(10, 500, 5000) == 0.1  # 2.5 x 0.0198 < 0.1
    assert drift_threshold(10, 100, 5000) == pytest.approx(2.5 * 9 * (1 / 100 + 1 / 5000))
    assert drift_threshold(1, 10, 10) == 0.1  # a constant feature: no noise at all
    with pytest.raises(ValueError):
        psi_noise_floor(10, 0, 5000)


def _no_drift_trials(rng: np.random.Generator, trials: int, n: int, m: int) -> np.ndarray:
    values = np.empty(trials)
    for t in range(trials):
        edges, props = quantile_bins(rng.normal(size=m))
        values[t] = psi(props, _counts(edges, rng.normal(size=n)))
    return values


def test_noise_floor_matches_simulation() -> None:
    values = _no_drift_trials(np.random.default_rng(3), 300, 500, 5000)
    assert values.mean() == pytest.approx(psi_noise_floor(10, 500, 5000), rel=0.15)
    # FACTS.md: the 99th percentile is about 2.5x the floor (0.055 at n=500).
    assert np.quantile(values, 0.99) < 3.5 * psi_noise_floor(10, 500, 5000)


def test_false_alarm_rate_below_two_percent_without_drift() -> None:
    n, m = 500, 5000
    values = _no_drift_trials(np.random.default_rng(4), 500, n, m)
    rate = float(np.mean(values > drift_threshold(10, n, m)))
    assert rate < 0.02


def test_false_alarm_rate_of_small_windows_stays_low() -> None:
    # n = 100 is where a fixed 0.1 threshold fails; the size-aware threshold holds.
    n, m = 100, 5000
    values = _no_drift_trials(np.random.default_rng(5), 500, n, m)
    assert np.mean(values > 0.1) > 0.2
    assert np.mean(values > drift_threshold(10, n, m)) < 0.03


def test_half_std_shift_is_detected_at_n_500() -> None:
    rng = np.random.default_rng(6)
    n, m = 500, 5000
    detected = 0
    for _ in range(100):
        edges, props = quantile_bins(rng.normal(size=m))
        value = psi(props, _counts(edges, rng.normal(0.5, 1.0, size=n)))
        detected += value > drift_threshold(10, n, m)
    assert detected >= 98


def test_drift_verdict() -> None:
    verdict = drift_verdict([0.5, 0.5], [400, 600], 5000)
    assert isinstance(verdict, DriftVerdict)
    assert verdict.n == 1000
    assert verdict.threshold == 0.1
    assert verdict.drifted is (verdict.psi > 0.1)
    assert verdict.to_dict() == {
        "psi": verdict.psi,
        "threshold": 0.1,
        "n": 1000,
        "drifted": verdict.drifted,
    }
    # Withheld below ten rows per reference bin, where empty bins dominate the PSI.
    assert drift_verdict([0.1] * 10, [9] * 10 + [0], 5000) is None
    assert drift_verdict([0.1] * 10, [10] * 10 + [0], 5000) is not None
    assert drift_verdict([0.5, 0.5], [0, 0], 5000) is None
