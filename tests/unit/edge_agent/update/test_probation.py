"""The probation verdict (edge_agent.update.probation): pure, with the clock passed in."""

from __future__ import annotations

import pytest

from edge_agent.update.probation import EARLY_FAILURE_MIN_ERRORS, ProbationWatch
from edgewise_wire import ProbationPolicy, SchemaError


def test_a_healthy_window_commits_at_its_end() -> None:
    watch = ProbationWatch(ProbationPolicy(10.0, max_p95_latency_ms=5.0), started_at=100.0)
    for _ in range(50):
        watch.observe(1, 1.0)
    assert watch.verdict(105.0) is None
    verdict = watch.verdict(110.0)
    assert verdict is not None and verdict.passed and "50 predictions" in verdict.reason


def test_errors_over_the_limit_fail_early() -> None:
    watch = ProbationWatch(ProbationPolicy(60.0, max_error_rate=0.1), started_at=0.0)
    for _ in range(20):
        watch.observe(1, 1.0)
    for _ in range(EARLY_FAILURE_MIN_ERRORS - 1):
        watch.observe_error(1)
    assert watch.verdict(1.0) is None  # not enough errors to decide before the end
    watch.observe_error(1)
    verdict = watch.verdict(1.0)
    assert verdict is not None and not verdict.passed
    assert "5 of 25 predictions failed" in verdict.reason and "limit 10.0%" in verdict.reason


def test_a_few_errors_under_the_limit_pass() -> None:
    watch = ProbationWatch(ProbationPolicy(1.0, max_error_rate=0.05), started_at=0.0)
    for _ in range(99):
        watch.observe(1, 1.0)
    watch.observe_error(1)
    verdict = watch.verdict(1.0)
    assert verdict is not None and verdict.passed


def test_a_slow_model_fails_on_its_p95() -> None:
    watch = ProbationWatch(ProbationPolicy(1.0, max_p95_latency_ms=2.0), started_at=0.0)
    for i in range(100):
        watch.observe(1, 1.0 if i < 90 else 9.0)  # 10% slow calls: the p95 is slow
    verdict = watch.verdict(1.0)
    assert verdict is not None and not verdict.passed
    assert "too slow in probation" in verdict.reason and "limit 2 ms" in verdict.reason


def test_no_traffic_is_nothing_to_judge() -> None:
    watch = ProbationWatch(ProbationPolicy(1.0, min_predictions=10), started_at=0.0)
    for _ in range(3):
        watch.observe_error(1)  # under min_predictions: not judged
    verdict = watch.verdict(2.0)
    assert verdict is not None and verdict.passed and "nothing to judge" in verdict.reason


def test_a_zero_window_commits_at_once() -> None:
    verdict = ProbationWatch(ProbationPolicy(0.0), started_at=5.0).verdict(5.0)
    assert verdict is not None and verdict.passed


@pytest.mark.parametrize("bad", [
    {"duration_s": -1}, {"duration_s": 1e9}, {"duration_s": 1, "max_error_rate": 1.5},
    {"duration_s": 1, "max_p95_latency_ms": 0}, {"duration_s": 1, "min_predictions": -1},
    {"max_error_rate": 0.1}, "30",
])
def test_bad_policies_are_schema_errors(bad: object) -> None:
    with pytest.raises(SchemaError):
        ProbationPolicy.from_dict(bad)


def test_policy_round_trips() -> None:
    policy = ProbationPolicy(30.0, 0.02, 15.0, 5)
    assert ProbationPolicy.from_dict(policy.to_dict()) == policy
    assert ProbationPolicy.from_dict({"duration_s": 3}) == ProbationPolicy(3.0)
