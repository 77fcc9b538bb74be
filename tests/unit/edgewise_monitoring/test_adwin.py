import numpy as np
import pytest

from edgewise_monitoring.adwin import Adwin


def _bernoulli(rng: np.random.Generator, p: float, size: int) -> np.ndarray:
    return (rng.random(size) < p).astype(float)


def test_no_false_alarm_on_a_stationary_stream() -> None:
    rng = np.random.default_rng(42)
    adwin = Adwin(delta=0.002)
    alarms = sum(adwin.update(x) for x in _bernoulli(rng, 0.1, 10_000))
    assert alarms == 0
    assert adwin.width == 10_000
    assert adwin.detections == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_detects_a_jump_in_error_rate_within_a_few_hundred_samples(seed: int) -> None:
    rng = np.random.default_rng(seed)
    adwin = Adwin()
    for x in _bernoulli(rng, 0.1, 5_000):
        assert not adwin.update(x)
    delay = None
    for i, x in enumerate(_bernoulli(rng, 0.4, 1_000)):
        if adwin.update(x):
            delay = i + 1
            break
    assert delay is not None and delay <= 300
    assert adwin.width < 5_000 + delay  # the old part of the window was dropped
    # Keep feeding the new regime: the window forgets the old one and its mean follows.
    for x in _bernoulli(rng, 0.4, 2_000):
        adwin.update(x)
    assert adwin.mean == pytest.approx(0.4, abs=0.06)


def test_window_statistics_are_exact_without_change() -> None:
    rng = np.random.default_rng(5)
    xs = _bernoulli(rng, 0.3, 3_000)
    adwin = Adwin()
    for x in xs:
        adwin.update(x)
    assert adwin.width == xs.size
    assert adwin.mean == pytest.approx(xs.mean())
    assert adwin.variance == pytest.approx(xs.var())


def test_memory_is_logarithmic() -> None:
    adwin = Adwin()
    for _ in range(10_000):
        adwin.update(0.0)
    buckets = sum(len(row) for row in adwin._rows)
    assert buckets <= 5 * 14


def test_refuses_bad_parameters_and_values() -> None:
    with pytest.raises(ValueError):
        Adwin(delta=0.0)
    with pytest.raises(ValueError):
        Adwin().update(float("nan"))
