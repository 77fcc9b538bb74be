import json

import numpy as np
import pytest

from edgewise_monitoring.errors import IncompatibleAggregates
from edgewise_monitoring.latency import (
    BOUNDS_MS,
    N_BUCKETS,
    RELATIVE_BUCKET_WIDTH,
    LatencyHistogram,
)


def test_bucket_scheme_is_fixed() -> None:
    assert BOUNDS_MS[0] == pytest.approx(0.01)
    assert 60_000 < BOUNDS_MS[-1] < 64_000
    assert N_BUCKETS == 70
    assert np.allclose(BOUNDS_MS[1:] / BOUNDS_MS[:-1], 10**0.1)
    assert abs(RELATIVE_BUCKET_WIDTH - 0.2589) < 1e-4


@pytest.mark.parametrize("seed", range(3))
def test_quantiles_within_one_bucket_of_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ms = rng.lognormal(mean=1.0, sigma=1.2, size=20_000)
    h = LatencyHistogram()
    h.record_many(ms)
    for q in (0.01, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999):
        est, true = h.quantile(q), float(np.percentile(ms, 100 * q))
        assert est is not None
        assert abs(est - true) <= RELATIVE_BUCKET_WIDTH * true, q
    assert h.quantile(0.0) == ms.min()
    assert h.quantile(1.0) == ms.max()
    assert h.mean == pytest.approx(ms.mean())


def test_quantiles_of_tiny_and_huge_latencies() -> None:
    h = LatencyHistogram()
    h.record_many([0.001, 0.002, 0.003, 100_000.0])
    p50 = h.quantile(0.5)
    assert p50 is not None and 0.001 <= p50 < 0.01  # the underflow bucket, narrowed to min
    assert h.quantile(1.0) == 100_000.0


def test_record_and_record_many_agree_and_merge_adds() -> None:
    rng = np.random.default_rng(4)
    ms = rng.exponential(5.0, size=500)
    ms[:5] = BOUNDS_MS[10:15]  # exactly on bucket bounds
    one, many, merged = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for v in ms:
        one.record(float(v))
    many.record_many(ms)
    for part in np.array_split(ms, 3):
        h = LatencyHistogram()
        h.record_many(part)
        merged.merge(h)
    assert np.array_equal(one.counts, many.counts)
    assert np.array_equal(merged.counts, many.counts)
    assert merged.count == many.count == 500
    assert merged.sum == pytest.approx(many.sum)
    assert (merged.min, merged.max) == (many.min, many.max)


def test_empty_histogram_and_json() -> None:
    h = LatencyHistogram()
    assert h.quantile(0.5) is None and h.mean is None
    d = json.loads(json.dumps(h.to_dict(), allow_nan=False))
    assert d["min"] is None
    assert LatencyHistogram.from_dict(d) == h
    h.record(3.0)
    assert LatencyHistogram.from_dict(json.loads(json.dumps(h.to_dict()))) == h


def test_refuses_bad_input() -> None:
    h = LatencyHistogram()
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            h.record(bad)
        with pytest.raises(ValueError):
            h.record_many([1.0, bad])
    with pytest.raises(ValueError):
        h.quantile(1.5)
    d = h.to_dict()
    d["scheme"] = "log10/20:-40..96"
    with pytest.raises(IncompatibleAggregates):
        LatencyHistogram.from_dict(d)
