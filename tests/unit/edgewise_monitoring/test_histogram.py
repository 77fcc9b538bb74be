import json
from typing import Any

import numpy as np
import pytest

from edgewise_monitoring import histogram
from edgewise_monitoring.errors import IncompatibleAggregates
from edgewise_monitoring.histogram import BinnedCounts, FeatureCounts


def _random_splits(rng: np.random.Generator, size: int, parts: int) -> list[np.ndarray]:
    cuts = np.sort(rng.integers(0, size + 1, size=parts - 1))
    return np.split(np.arange(size), cuts)


def test_numeric_bins_follow_searchsorted_right() -> None:
    edges = [-1.0, 0.0, 0.0, 2.5]
    values = np.array([-5, -1.0, -0.5, 0.0, 1.0, 2.5, 3.0, np.inf, -np.inf, np.nan])
    h = BinnedCounts.numeric(edges)
    h.add(values)
    finite = values[~np.isnan(values)]
    expected = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=5)
    assert h.counts.tolist() == expected.tolist()
    assert h.other == 1  # NaN
    assert h.total == values.size


def test_constant_feature_has_one_bin() -> None:
    h = BinnedCounts.numeric([])
    h.add([1.0, 2.0, np.nan])
    assert h.counts.tolist() == [2]
    assert h.other == 1


@pytest.mark.parametrize("seed", range(5))
def test_numeric_merge_equals_histogram_of_concatenation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    edges = np.sort(rng.normal(size=rng.integers(0, 12)))
    data = rng.normal(size=2000)
    data[rng.random(2000) < 0.02] = np.nan
    data[:50] = rng.choice(edges, 50) if edges.size else 0.0  # values exactly on an edge
    whole = BinnedCounts.numeric(edges)
    whole.add(data)
    merged = BinnedCounts.numeric(edges)
    for part in _random_splits(rng, data.size, int(rng.integers(2, 8))):
        h = BinnedCounts.numeric(edges)
        h.add(data[part])
        merged.merge(h)
    assert merged == whole


@pytest.mark.parametrize("seed", range(5))
def test_categorical_merge_equals_histogram_of_concatenation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = ["cat", "dog", "eel"]
    data = rng.choice(labels + ["yak"], size=1000)
    whole = BinnedCounts.categorical(labels)
    whole.add(data)
    merged = BinnedCounts.categorical(labels)
    for part in _random_splits(rng, data.size, 4):
        h = BinnedCounts.categorical(labels)
        h.add(data[part].astype(object))  # the dict path must agree with the vectorised one
        merged.merge(h)
    assert merged == whole
    assert whole.other == int(np.sum(data == "yak"))


def test_categorical_label_types() -> None:
    h = BinnedCounts.categorical([2, 0, 1])
    h.add(np.array([0, 1, 1, 2, 7], dtype=np.int64))
    h.add([1.0, 2.0, 0.5])
    h.add(np.array(["1"], dtype=object))  # the string "1" is not the label 1
    assert h.labels == (2, 0, 1)
    assert h.counts.tolist() == [2, 1, 3]
    assert h.other == 3
    mixed = BinnedCounts.categorical([0, "a"])
    mixed.add(np.array([0, "a", "b", 0.0, None], dtype=object))
    assert mixed.counts.tolist() == [2, 1]
    assert mixed.other == 2
    with pytest.raises(ValueError):
        BinnedCounts.categorical([1, 1.0])


def test_json_round_trip() -> None:
    for h in (BinnedCounts.numeric([0.5, 1.5]), BinnedCounts.categorical(["a", 3])):
        h.add(np.array([0.0, 1.0, 2.0, np.nan]) if h.kind == "numeric" else ["a", 3, 3, "z"])
        d = json.loads(json.dumps(h.to_dict(), allow_nan=False))
        assert BinnedCounts.from_dict(d) == h


def test_merge_refuses_different_bins() -> None:
    with pytest.raises(IncompatibleAggregates):
        BinnedCounts.numeric([0.0]).merge(BinnedCounts.numeric([1.0]))
    with pytest.raises(IncompatibleAggregates):
        BinnedCounts.categorical(["a"]).merge(BinnedCounts.numeric([1.0]))


def test_feature_counts_agree_with_per_feature_searchsorted() -> None:
    rng = np.random.default_rng(7)
    edges: list[Any] = [np.sort(rng.normal(size=9)), [], [0.0, 0.0, 1.0], [0.5], np.sort(rng.normal(size=30))]
    x = rng.normal(size=(3000, len(edges)))
    x[rng.random(x.shape) < 0.01] = np.nan
    x[::13, 2] = 0.0
    x[5, 3], x[6, 3], x[7, 4] = np.inf, -np.inf, np.inf
    fc = FeatureCounts(edges)
    fc.add(x)
    fc.add(x[0])  # one row as a 1-D array
    assert fc.rows == x.shape[0] + 1
    for j, e in enumerate(edges):
        h = BinnedCounts.numeric(e)
        h.add(np.concatenate([x[:, j], x[:1, j]]))
        assert fc.column(j) == h


def test_feature_counts_chunking_and_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(8)
    edges = [np.sort(rng.normal(size=9)) for _ in range(4)]
    x = rng.normal(size=(5000, 4))
    whole = FeatureCounts(edges)
    whole.add(x)
    chunked = FeatureCounts(edges)
    monkeypatch.setattr(histogram, "_MAX_COMPARISONS", 100)  # 2 rows per chunk
    chunked.add(x)
    assert np.array_equal(whole.counts, chunked.counts)
    merged = FeatureCounts(edges)
    for part in _random_splits(rng, x.shape[0], 5):
        fc = FeatureCounts(edges)
        fc.add(x[part])
        merged.merge(fc)
    assert np.array_equal(whole.counts, merged.counts)
    with pytest.raises(ValueError):
        whole.add(rng.normal(size=(3, 5)))
    with pytest.raises(IncompatibleAggregates):
        whole.merge(FeatureCounts(edges[:3]))


def test_single_value_path_agrees_with_vectorised_path() -> None:
    rng = np.random.default_rng(9)
    edges = [-1.0, 0.0, 0.0, 2.5]
    values = np.concatenate([rng.normal(size=200), edges, [np.nan, np.inf, -np.inf]])
    one, many = BinnedCounts.numeric(edges), BinnedCounts.numeric(edges)
    for v in values:
        one.add(v)
    many.add(values)
    assert one == many
    labels: list[Any] = [3, 1.5, "a"]
    items: list[Any] = [3, 3.0, np.int64(3), 1.5, "a", "b", "3", None, np.nan, 7]
    one, many = BinnedCounts.categorical(labels), BinnedCounts.categorical(labels)
    for item in items:
        one.add(np.array([item], dtype=object))
    many.add(np.array(items, dtype=object))
    assert one == many
    assert one.counts.tolist() == [3, 1, 1] and one.other == 5
    ints, floats = BinnedCounts.categorical([0, 1]), BinnedCounts.categorical([0, 1])
    for v in (0, 1, 1, 5):
        ints.add(np.array([v], dtype=np.int64))
    floats.add(np.array([0, 1, 1, 5], dtype=np.int64))
    assert ints == floats


def test_feature_counts_single_rows_with_non_finite_values() -> None:
    edges: list[Any] = [[0.0, 1.0], [], [0.5]]
    rows = np.array([[np.nan, np.inf, -np.inf], [1.0, np.nan, 0.5], [np.inf, 2.0, np.nan]])
    one, many = FeatureCounts(edges), FeatureCounts(edges)
    for row in rows:
        one.add(row)
    many.add(rows)
    assert np.array_equal(one.counts, many.counts)
    for j, e in enumerate(edges):
        h = BinnedCounts.numeric(e)
        h.add(rows[:, j])
        assert one.column(j) == h
