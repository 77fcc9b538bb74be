"""The pure arithmetic of the views: bucket plans, series filling, group rollups, paging."""

from __future__ import annotations

import pytest

from controller.paging import page
from controller.web.rollup import (
    DeviceFacts,
    Sums,
    fill_series,
    label_keys,
    plan_buckets,
    rollup_groups,
)


@pytest.mark.parametrize("window, buckets, size", [
    (3600, 60, 60), (900, 60, 15), (86400, 60, 1800), (600, 7, 120), (60, 100, 1),
    (30 * 86400, 10, 3 * 86400),
])
def test_buckets_are_nice_aligned_and_cover_the_window(window: float, buckets: int,
                                                       size: float) -> None:
    now = 1_700_000_123.4
    plan = plan_buckets(now, window, buckets)
    assert plan.size == size
    assert plan.start % size == 0
    assert plan.start <= now - window < plan.start + size
    assert plan.end > now >= plan.end - size
    assert plan.index(now) == plan.count - 1
    assert plan.index(plan.start) == 0 and plan.index(plan.start - 0.001) is None
    assert plan.index(plan.end) is None


def test_two_polls_a_moment_apart_share_their_buckets() -> None:
    a, b = plan_buckets(1000.0 * 3600 + 5, 3600, 60), plan_buckets(1000.0 * 3600 + 9, 3600, 60)
    assert (a.start, a.size) == (b.start, b.size)


@pytest.mark.parametrize("window, buckets", [(0, 10), (-5, 10), (60, 0)])
def test_a_plan_needs_a_positive_window(window: float, buckets: int) -> None:
    with pytest.raises(ValueError):
        plan_buckets(1000.0, window, buckets)


def test_sums_add_up_and_ratios_need_data() -> None:
    a = Sums(predictions=4, latency_sum=8.0, latency_n=4, latency_max=3.0, labelled=2, hits=1)
    b = Sums(predictions=1, latency_sum=6.0, latency_n=1, latency_max=6.0, errors=2)
    a.add(b)
    assert a.figures() == {"predictions": 5, "errors": 2, "labelled": 2, "accuracy": 0.5,
                           "mean_latency_ms": 14.0 / 5, "max_latency_ms": 6.0}
    assert Sums().figures()["accuracy"] is None and Sums().mean_latency_ms is None


def test_series_has_a_point_per_bucket_and_nothing_invented() -> None:
    plan = plan_buckets(600.0, 300, 5)
    points = fill_series(plan, {1: Sums(predictions=3, labelled=1, hits=1)}, drift={1: 0.2},
                         p95=None)
    assert [p["ts"] for p in points] == [plan.start + i * plan.size for i in range(plan.count)]
    assert points[1]["predictions"] == 3 and points[1]["accuracy"] == 1.0
    assert points[1]["drift_psi"] == 0.2 and points[1]["p95_latency_ms"] is None
    assert points[0]["predictions"] == 0 and points[0]["accuracy"] is None
    assert points[0]["drift_psi"] is None


def _facts() -> list[DeviceFacts]:
    return [
        DeviceFacts("a", {"site": "berlin"}, True, "active", "iris", 1),
        DeviceFacts("b", {"site": "berlin"}, False, "failed", "iris", 2),
        DeviceFacts("c", {"site": "oslo"}, True, "active", "iris", 1),
        DeviceFacts("d", {}, True, "idle", None, None),
    ]


def test_groups_roll_up_devices_figures_and_drift() -> None:
    sums = {"a": Sums(predictions=10, labelled=4, hits=3), "b": Sums(predictions=5, errors=1),
            "c": Sums(predictions=1)}
    groups = {g["group"]: g for g in rollup_groups(_facts(), "site", sums,
                                                   drift={"berlin": 0.4}, drifting={"a"})}
    assert list(groups) == ["", "berlin", "oslo"]
    berlin = groups["berlin"]
    assert (berlin["devices"], berlin["online"], berlin["offline"], berlin["failed"]) == (2, 1, 1, 1)
    assert berlin["versions"] == {"iris:1": 1, "iris:2": 1}
    assert (berlin["predictions"], berlin["errors"], berlin["accuracy"]) == (15, 1, 0.75)
    assert (berlin["drift_psi"], berlin["drifting"]) == (0.4, 1)
    assert groups["oslo"]["drift_psi"] is None and groups["oslo"]["drifting"] == 0
    assert groups[""]["versions"] == {} and groups[""]["predictions"] == 0


def test_without_drift_figures_groups_say_not_measured() -> None:
    groups = rollup_groups(_facts(), "site", {}, drift=None)
    assert all(g["drift_psi"] is None and g["drifting"] is None for g in groups)


def test_label_keys_and_paging() -> None:
    assert label_keys([{"site": "x"}, {}, {"hw": "pi4", "site": "y"}]) == ["hw", "site"]
    assert page([1, 2, 3, 4], 2, 1) == [2, 3]
    assert page([1, 2, 3], None, 1) == [2, 3]
    assert page([1, 2], 5, 9) == []
