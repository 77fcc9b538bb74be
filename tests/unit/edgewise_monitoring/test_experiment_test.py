"""The two-arm sequential test: error rates measured over many seeded runs, looked at every window."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgewise_monitoring.experiment_test import (
    ArmTally,
    Design,
    DesignError,
    PairedTally,
    cs_radius,
    judge,
    judge_latency,
    log_mixture_ratio,
)
from edgewise_monitoring.sequential import normal_quantile

DESIGN = Design(mde=0.05, alpha=0.05, beta=0.2, baseline_accuracy=0.8)
WINDOW = 50  # labelled rows per arm per window: the test is looked at after every one
RUNS = 300


def _unpaired_run(seed: int, p_control: float, p_candidate: float) -> tuple[str, int]:
    rng = np.random.default_rng(seed)
    control, candidate = ArmTally(), ArmTally()
    while True:
        control.add(ArmTally(WINDOW, int(rng.binomial(WINDOW, p_control))))
        candidate.add(ArmTally(WINDOW, int(rng.binomial(WINDOW, p_candidate))))
        result = judge(DESIGN, control, candidate)  # a look after every window
        if result.verdict != "running":
            return result.verdict, result.rows


def _paired_run(seed: int, p_control: float, flip_to_right: float,
                flip_to_wrong: float) -> tuple[str, int, int]:
    """Both versions answer the same rows; the candidate differs on a few of them."""
    rng = np.random.default_rng(seed)
    paired = PairedTally()
    while True:
        control_right = rng.random(WINDOW) < p_control
        u = rng.random(WINDOW)
        candidate_right = np.where(control_right, u >= flip_to_wrong, u < flip_to_right)
        window = PairedTally(WINDOW, int(candidate_right.sum() - control_right.sum()),
                             int((candidate_right != control_right).sum()))
        paired.add(window)
        result = judge(DESIGN, ArmTally(), ArmTally(), paired)
        if result.verdict != "running":
            return result.verdict, result.rows, result.predicted_rows


WINNERS = {"candidate_better", "control_better"}


def test_equal_arms_no_winner_in_95_percent_of_runs_looking_every_window() -> None:
    verdicts = [_unpaired_run(seed, 0.8, 0.8)[0] for seed in range(RUNS)]
    false_winners = sum(v in WINNERS for v in verdicts)
    assert false_winners / RUNS <= 0.05, f"{false_winners} of {RUNS} runs declared a winner"
    # every run stopped with a verdict (equivalent or inconclusive), none ran forever
    assert all(v in {"equivalent", "inconclusive"} | WINNERS for v in verdicts)


def test_equal_arms_paired_no_winner_in_95_percent_of_runs() -> None:
    # the candidate fixes 10 % of the control's errors and breaks 2.5 % of its right answers:
    # different answers, the same accuracy
    verdicts = [_paired_run(seed, 0.8, 0.1, 0.025)[0] for seed in range(RUNS)]
    false_winners = sum(v in WINNERS for v in verdicts)
    assert false_winners / RUNS <= 0.05, f"{false_winners} of {RUNS} paired runs declared one"


def test_a_fixed_sample_z_test_looked_at_every_window_would_not_hold_its_rate() -> None:
    """Why the mixture: the naive test, peeked at as often, declares far more false winners."""
    z = normal_quantile(1 - DESIGN.alpha / 2)
    false_winners = 0
    for seed in range(RUNS):
        rng = np.random.default_rng(seed)
        a = b = n = 0
        for _ in range(DESIGN.ceiling // WINDOW):
            a += int(rng.binomial(WINDOW, 0.8))
            b += int(rng.binomial(WINDOW, 0.8))
            n += WINDOW
            pa, pb = a / n, b / n
            se = math.sqrt(pa * (1 - pa) / n + pb * (1 - pb) / n)
            if se > 0 and abs(pb - pa) / se > z:
                false_winners += 1
                break
    assert false_winners / RUNS > 0.15


def test_a_better_candidate_is_declared_within_the_predicted_rows_in_most_runs() -> None:
    predicted = DESIGN.predicted_rows()
    results = [_unpaired_run(seed, 0.8, 0.85) for seed in range(RUNS)]
    in_time = sum(v == "candidate_better" and rows <= predicted for v, rows in results)
    assert in_time / RUNS >= 1 - DESIGN.beta - 0.05, f"{in_time} of {RUNS} within {predicted}"
    assert sum(v == "control_better" for v, _ in results) == 0


def test_a_worse_candidate_is_declared_worse() -> None:
    results = [_unpaired_run(seed, 0.85, 0.8) for seed in range(100)]
    assert sum(v == "control_better" for v, _ in results) >= 80


def test_a_better_shadow_is_declared_within_its_paired_prediction() -> None:
    # the candidate fixes 40 % of the control's errors (0.2 * 0.4) and breaks 1.25 % of its
    # right answers (0.8 * 0.0125): seven points better, above the design's five
    results = [_paired_run(seed, 0.8, 0.4, 0.0125) for seed in range(100)]
    in_time = sum(v == "candidate_better" and rows <= predicted for v, rows, predicted in results)
    assert in_time >= 75, f"{in_time} of 100"


def test_the_interval_covers_the_true_difference_at_every_look() -> None:
    misses = 0
    for seed in range(200):
        rng = np.random.default_rng(1000 + seed)
        control, candidate = ArmTally(), ArmTally()
        for _ in range(60):
            control.add(ArmTally(WINDOW, int(rng.binomial(WINDOW, 0.7))))
            candidate.add(ArmTally(WINDOW, int(rng.binomial(WINDOW, 0.73))))
            result = judge(DESIGN, control, candidate)
            assert result.low is not None and result.high is not None
            if not result.low <= 0.03 <= result.high:
                misses += 1
                break
    assert misses / 200 <= 0.05


def test_verdicts_and_their_interval() -> None:
    assert judge(DESIGN, ArmTally(), ArmTally()).verdict == "running"
    few = judge(DESIGN, ArmTally(20, 20), ArmTally(20, 0))
    assert few.verdict == "running"  # below min_rows whatever the counts
    big = judge(DESIGN, ArmTally(2000, 1600), ArmTally(2000, 1800))
    assert big.verdict == "candidate_better"
    assert big.low is not None and big.high is not None and big.effect is not None
    assert big.effect == pytest.approx(0.1)
    assert big.low < big.effect < big.high
    same = judge(DESIGN, ArmTally(20000, 16000), ArmTally(20000, 16010))
    assert same.verdict == "equivalent"
    assert same.to_dict()["verdict"] == "equivalent"


def test_radius_and_evidence_agree() -> None:
    v, tau2, alpha = 0.0004, 0.0025, 0.05
    r = cs_radius(v, tau2, alpha)
    assert log_mixture_ratio(r, v, tau2) == pytest.approx(math.log(1 / alpha))
    assert log_mixture_ratio(r * 0.99, v, tau2) < math.log(1 / alpha)


def test_predicted_rows_shrink_with_a_larger_effect_and_pairing() -> None:
    small = Design(mde=0.02).predicted_rows()
    large = Design(mde=0.1).predicted_rows()
    assert small > large
    assert DESIGN.predicted_rows(paired_disagreement=0.1) < DESIGN.predicted_rows()
    assert Design.from_dict(DESIGN.to_dict()) == DESIGN


@pytest.mark.parametrize("kwargs", [{"mde": 0.0}, {"alpha": 0.7}, {"beta": 0.0},
                                    {"baseline_accuracy": 0.99}, {"min_rows": 0}],
                         ids=["mde", "alpha", "beta", "baseline", "min_rows"])
def test_bad_designs_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(DesignError):
        Design(**kwargs)  # type: ignore[arg-type]


def test_latency_comparison() -> None:
    rng = np.random.default_rng(3)

    def tally(mean: float) -> ArmTally:
        x = rng.normal(mean, 1.0, 2000)
        return ArmTally(calls=2000, latency_sum=float(x.sum()),
                        latency_sumsq=float((x * x).sum()))

    assert judge_latency(DESIGN, tally(10.0), tally(12.0)).verdict == "slower"
    assert judge_latency(DESIGN, tally(10.0), tally(8.0)).verdict == "faster"
    assert judge_latency(DESIGN, ArmTally(), tally(8.0)).verdict == "running"
    equal_slower = sum(judge_latency(DESIGN, tally(10.0), tally(10.0)).verdict
                       in {"slower", "faster"} for _ in range(200))
    assert equal_slower <= 10


def test_tallies_round_trip() -> None:
    arm = ArmTally(3, 2, 4, 1.5, 2.5)
    assert ArmTally.from_dict(arm.to_dict()) == arm
    pair = PairedTally(5, -1, 3)
    assert PairedTally.from_dict(pair.to_dict()) == pair
    interval = ArmTally(100, 80).accuracy_interval(0.05, 0.0025)
    assert interval is not None and interval[0] < 0.8 < interval[1]
