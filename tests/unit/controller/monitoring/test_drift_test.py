"""DriftDetector: measured false alarms against its stated bound, detection delays, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import chi2

from controller.monitoring.drift_test import DriftDetector, DriftSettings
from edgewise_monitoring import MonitoringWindow
from edgewise_monitoring.evidence import PREDICTION, WindowEvidence, pool
from tests.unit.edgewise_monitoring.streams import (
    normal_profile,
    true_bin_probabilities,
    window_counts,
)

ROWS = 100_000
WINDOW = 500


def _null_alarms(seed: int, alpha: float, window: int = WINDOW) -> int:
    """Alarms over ROWS no-change rows: 8 features and a 2-class prediction, counts drawn from
    the true bin probabilities (the reference proportions carry their sampling error)."""
    rng = np.random.default_rng(seed)
    profile, edges = normal_profile(rng)
    det = DriftDetector.from_profile(profile, DriftSettings(alpha=alpha))
    probs = true_bin_probabilities(edges) + [np.array([0.5, 0.5])]
    alarms = 0
    for _ in range(ROWS // window):
        counts = [rng.multinomial(window, p).tolist() for p in probs]
        alarms += det.update_counts(counts).alarm
    return alarms


@pytest.mark.parametrize("seed", range(5))
def test_no_false_alarm_in_100k_no_change_rows(seed: int) -> None:
    """Default alpha 1e-7 per row: the bound is 0.01 alarms per 100,000 rows."""
    assert _null_alarms(seed, 1e-7) == 0


def test_measured_false_alarm_rate_is_within_the_bound_at_a_loose_alpha() -> None:
    """At alpha = 1e-4 per row the bound is 10 alarms per 100,000 rows; the measured rate over
    several references and window sizes must not exceed it (it is far below: the bound is a
    ceiling, the reference allowance makes the test conservative)."""
    alarms = sum(_null_alarms(seed, 1e-4, window) for seed in range(3) for window in (100, 500))
    per_100k = alarms / 6
    assert per_100k <= 10.0
    assert per_100k <= 2.0  # what it measures here, with room


def _shift_delay(seed: int, shift: float, max_windows: int = 20) -> int | None:
    rng = np.random.default_rng(seed)
    profile, edges = normal_profile(rng, classes=None)
    det = DriftDetector.from_profile(profile)
    for _ in range(10):  # some no-change history first
        assert not det.update_counts(window_counts(rng.normal(size=(WINDOW, 8)), edges)).alarm
    for w in range(1, max_windows + 1):
        x = rng.normal(size=(WINDOW, 8))
        x[:, 3] += shift
        d = det.update_counts(window_counts(x, edges))
        if d.alarm:
            assert d.explanation["leader"]["histogram"] == "x3"
            return w
    return None


def test_one_sd_shift_alarms_in_the_first_window() -> None:
    assert [_shift_delay(s, 1.0) for s in range(5)] == [1] * 5


def test_quarter_sd_shift_alarms_within_five_windows() -> None:
    delays = [_shift_delay(s, 0.25) for s in range(9)]
    assert all(d is not None for d in delays)
    assert float(np.median([d for d in delays if d is not None])) <= 5


def test_explanation_names_test_statistic_threshold_and_evidence() -> None:
    rng = np.random.default_rng(3)
    profile, edges = normal_profile(rng, classes=None)
    det = DriftDetector.from_profile(profile)
    x = rng.normal(size=(WINDOW, 8))
    x[:, 0] += 1.0
    d = det.update_counts(window_counts(x, edges))
    assert d.alarm and d.state == "alarm" and d.score >= d.threshold
    ex = d.to_dict()["explanation"]
    json.dumps(d.to_dict(), allow_nan=False)
    assert ex["leader"]["histogram"] == "x0" and ex["leader"]["g"] > 100
    assert ex["histograms"][0]["name"] == "x0" and ex["histograms"][0]["psi"] > 0.5
    assert "x0" in d.detail and "per row" in ex["false_alarm_rate"]


def test_alarm_clears_once_the_shift_is_gone() -> None:
    rng = np.random.default_rng(4)
    profile, edges = normal_profile(rng, classes=None)
    det = DriftDetector.from_profile(profile, DriftSettings(clear_after=3))
    x = rng.normal(size=(WINDOW, 8))
    x[:, 1] += 1.0
    assert det.update_counts(window_counts(x, edges)).alarm
    states = [det.update_counts(window_counts(rng.normal(size=(WINDOW, 8)), edges))
              for _ in range(6)]
    assert any(d.cleared for d in states)
    assert states[-1].state == "watching"


def test_state_round_trips_through_json_mid_stream() -> None:
    rng = np.random.default_rng(5)
    profile, edges = normal_profile(rng)
    a = DriftDetector.from_profile(profile)
    probs = true_bin_probabilities(edges, 0.2) + [np.array([0.5, 0.5])]
    stream = [[rng.multinomial(WINDOW, p).tolist() for p in probs] for _ in range(8)]
    for counts in stream[:3]:
        a.update_counts(counts)
    b = DriftDetector.from_dict(json.loads(json.dumps(a.to_dict(), allow_nan=False)))
    for counts in stream[3:]:
        da, db = a.update_counts(counts), b.update_counts(counts)
        assert (da.alarm, da.score, da.state) == (db.alarm, db.score, db.state)


def test_small_windows_pool_until_they_can_be_judged() -> None:
    rng = np.random.default_rng(6)
    profile, edges = normal_profile(rng, classes=None)
    det = DriftDetector.from_profile(profile)
    decisions = [det.update_counts(window_counts(rng.normal(size=(30, 8)), edges))
                 for _ in range(4)]
    assert [d.judged for d in decisions] == [False, False, False, True]  # 100 rows for 10 bins
    assert "pending" in decisions[0].detail
    assert decisions[-1].explanation["histograms"][0]["n"] == 120


def test_nan_values_are_counted_not_taken_for_drift() -> None:
    rng = np.random.default_rng(7)
    profile, edges = normal_profile(rng, classes=None)
    det = DriftDetector.from_profile(profile)
    for _ in range(40):
        x = rng.normal(size=(WINDOW, 8))
        x[rng.random(WINDOW) < 0.3, 2] = np.nan  # 30% missing on one feature
        x[:, 5] = np.nan  # one feature always missing
        counts = window_counts(x, edges)
        others = [int(np.isnan(x[:, j]).sum()) for j in range(8)]
        d = det.update_counts(counts, others)
        assert not d.alarm
    assert det.stats["nan_values"] > 40 * WINDOW
    x5 = [h for h in d.explanation["histograms"] if h["name"] == "x2"][0]
    assert x5["nan_values"] > 0


def test_constant_feature_and_missing_profile_are_reported_not_judged() -> None:
    rng = np.random.default_rng(8)
    profile, edges = normal_profile(rng, features=2, classes=None)
    profile["features"].append({"name": "stuck", "edges": [], "proportions": [1.0]})
    det = DriftDetector.from_profile(profile)
    x = rng.normal(size=(WINDOW, 2))
    d = det.update_counts(window_counts(x, edges) + [[WINDOW]])
    assert d.explanation["not_judgeable"] == ["stuck"] and not d.alarm
    empty = DriftDetector.from_profile({})
    d = empty.update_counts([])
    assert not d.judged and not d.alarm and "no histogram" in d.detail


def test_evidence_of_another_profile_is_rejected() -> None:
    rng = np.random.default_rng(9)
    profile, _ = normal_profile(rng, classes=None)
    det = DriftDetector.from_profile(profile)
    ev = WindowEvidence(profile_id="someone-else", task="classification")
    d = det.update(ev)
    assert not d.judged and det.stats["rejected"] == 1


def test_wrong_shapes_raise_before_counting() -> None:
    rng = np.random.default_rng(10)
    profile, edges = normal_profile(rng, features=2, classes=None)
    det = DriftDetector.from_profile(profile)
    with pytest.raises(ValueError):
        det.update_counts([[1, 2, 3]])
    with pytest.raises(ValueError):
        det.update_counts([[1] * 10, [-1] * 10])
    assert det.stats["updates"] == 0


def test_summaries_of_the_window_feed_the_detector() -> None:
    rng = np.random.default_rng(11)
    profile, _ = normal_profile(rng)
    window = MonitoringWindow(profile, "classification", [0, 1], embed_reference=False)
    det = DriftDetector.from_profile(profile)
    x = rng.normal(size=(WINDOW, 8))
    x[:, 6] += 1.0
    window.observe(x, rng.integers(0, 2, WINDOW), rng.uniform(0.5, 1, WINDOW))
    ev = WindowEvidence.from_summary(window.summary(1.0))
    assert set(ev.histograms) == {f"x{j}" for j in range(8)} | {PREDICTION}
    d = det.update(ev)
    assert d.alarm and d.explanation["leader"]["histogram"] == "x6"


def _fleet_delay(devices: int, shift: float, seed: int, max_ticks: int = 40) -> int | None:
    rng = np.random.default_rng(seed)
    profile, edges = normal_profile(rng, classes=None)
    probs = true_bin_probabilities(edges, 0.0)
    shifted = true_bin_probabilities(edges, shift)
    fleet = DriftDetector.from_profile(profile)
    for tick in range(1, max_ticks + 1):
        evidence = []
        for _ in range(devices):
            counts = [rng.multinomial(WINDOW, p).tolist() for p in probs]
            counts[0] = rng.multinomial(WINDOW, shifted[0]).tolist()
            ev = WindowEvidence(profile_id=fleet.profile_id, task="classification", rows=WINDOW,
                                histograms={f"x{j}": (c, 0) for j, c in enumerate(counts)})
            evidence.append(ev)
        if fleet.update(pool(evidence)).alarm:
            return tick
    return None


def test_fleet_pooling_detects_a_shared_small_shift_sooner() -> None:
    """0.15 sd on every device: one device needs many windows, ten pooled devices one or two."""
    alone = [_fleet_delay(1, 0.15, s) for s in range(3)]
    pooled = [_fleet_delay(10, 0.15, s) for s in range(3)]
    assert all(p is not None and p <= 2 for p in pooled)
    assert all(a is None or a > 3 for a in alone)


def test_reference_allowance_and_p_values_are_scipys_exact_chi_square() -> None:
    """The allowance for the reference's sampling error is ``n q / m`` with ``q`` the exact
    chi-square quantile at ``1 - reference_alpha`` (not an approximation), and each histogram's
    p-value is the exact chi-square tail of its G."""
    rng = np.random.default_rng(7)
    profile, edges = normal_profile(rng, classes=None)
    det = DriftDetector.from_profile(profile, DriftSettings(reference_alpha=1e-3))
    decision = det.update_counts(window_counts(rng.normal(0.3, 1.0, size=(WINDOW, 8)), edges))
    histograms = decision.explanation["histograms"]
    assert histograms
    for h in histograms:
        q = float(chi2.ppf(1 - 1e-3, h["dof"]))
        assert h["reference_allowance"] == pytest.approx(h["n"] * q / det.reference_n, abs=1e-4)
        # the explanation rounds g to 4 places, the p-value is of the unrounded g
        assert h["p_value"] == pytest.approx(float(chi2.sf(h["g"], h["dof"])), rel=1e-3)
