"""What makes a window bad, per alert kind."""

from __future__ import annotations

import dataclasses

import numpy as np

from controller.monitoring import AlertKind, AlertRules, WindowObservation, judge_window
from controller.monitoring.rules import Histogram, chi2_quantile, familywise_drift
from edgewise_monitoring import drift_verdict

RULES = AlertRules(accuracy_max_drop=0.1, accuracy_min_labels=20, latency_p95_ms=100,
                   latency_min_predictions=20)
BASE = WindowObservation("d", "m", 1, "classification", 0.0, 60.0, predictions=500,
                         labelled=100, accuracy=0.95, p95_latency_ms=5.0, drift_psi=0.02,
                         drift_threshold=0.1, drifted=False, reference_accuracy=0.96)


def verdict(obs: WindowObservation, kind: AlertKind, rules: AlertRules = RULES):  # type: ignore[no-untyped-def]
    return next(v for v in judge_window(obs, rules) if v.kind is kind)


def test_a_healthy_window_is_good_on_every_kind() -> None:
    assert [v.bad for v in judge_window(BASE, RULES)] == [False, False, False]


def test_accuracy_is_bad_below_reference_minus_allowed_drop() -> None:
    v = verdict(dataclasses.replace(BASE, accuracy=0.85), AlertKind.ACCURACY)
    assert v.bad and abs(v.threshold - 0.86) < 1e-12 and "reference" in v.detail
    assert not verdict(dataclasses.replace(BASE, accuracy=0.87), AlertKind.ACCURACY).bad


def test_a_configured_floor_applies_with_or_without_a_reference() -> None:
    rules = dataclasses.replace(RULES, accuracy_floor=0.9)
    assert verdict(dataclasses.replace(BASE, accuracy=0.89), AlertKind.ACCURACY, rules).bad
    no_ref = dataclasses.replace(BASE, reference_accuracy=None, accuracy=0.5)
    assert verdict(no_ref, AlertKind.ACCURACY).bad is None  # nothing to compare with
    assert verdict(no_ref, AlertKind.ACCURACY, rules).bad is True


def test_too_few_labels_give_no_accuracy_verdict() -> None:
    v = verdict(dataclasses.replace(BASE, labelled=19, accuracy=0.0), AlertKind.ACCURACY)
    assert v.bad is None and "fewer than 20" in v.detail


def test_regression_compares_mae_with_the_reference() -> None:
    reg = dataclasses.replace(BASE, task="regression", accuracy=None, mae=3.0, reference_mae=1.0)
    assert verdict(reg, AlertKind.ACCURACY).bad  # 3.0 > 1.5 x 1.0
    assert not verdict(dataclasses.replace(reg, mae=1.4), AlertKind.ACCURACY).bad


def test_latency_over_the_p95_bound_is_bad_with_enough_calls() -> None:
    assert verdict(dataclasses.replace(BASE, p95_latency_ms=150.0), AlertKind.LATENCY).bad
    few = dataclasses.replace(BASE, p95_latency_ms=150.0, predictions=5)
    assert verdict(few, AlertKind.LATENCY).bad is None


def test_drift_follows_the_window_verdict_and_names_what_drifted() -> None:
    v = verdict(dataclasses.replace(BASE, drifted=True, drift_psi=0.8,
                                    drifted_features=("petal length",), prediction_drifted=True),
                AlertKind.DRIFT)
    assert v.bad and "petal length" in v.detail and "prediction" in v.detail
    assert verdict(dataclasses.replace(BASE, drifted=None), AlertKind.DRIFT).bad is None


def _windows(rng, n_windows: int, n: int, features: int, shift: float = 0.0):  # type: ignore[no-untyped-def]
    """Decile histograms of standard-normal windows against a large reference."""
    from tests.harness.profiles import quantile_bins

    reference = rng.normal(size=20_000)
    edges, props = quantile_bins(reference)
    for _ in range(n_windows):
        hists = []
        for j in range(features):
            x = rng.normal(size=n) + (shift if j == 0 else 0.0)
            counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(props))
            hists.append(Histogram(f"x{j}", props, [*counts.tolist(), 0]))
        yield hists, len(reference)


def test_familywise_threshold_keeps_false_alarms_near_alpha_with_many_features() -> None:
    rng = np.random.default_rng(7)
    familywise = per_feature = 0
    windows = 200
    for hists, m in _windows(rng, windows, n=200, features=64):
        finding = familywise_drift(hists, m, alpha=0.01, base=0.1, eps=1e-4, min_rows_per_bin=10)
        familywise += bool(finding.drifted)
        per_feature += any(drift_verdict(h.expected, h.counts, m).drifted for h in hists)  # type: ignore[union-attr]
    # the device's per-histogram 99% verdicts fire in about half the windows of a 64-feature
    # model; the window-level threshold in about alpha of them
    assert per_feature > 0.2 * windows
    assert familywise <= 0.04 * windows


def test_familywise_threshold_still_catches_a_half_sd_shift_on_one_feature() -> None:
    rng = np.random.default_rng(8)
    caught = sum(bool(familywise_drift(h, m, alpha=0.01, base=0.1, eps=1e-4,
                                       min_rows_per_bin=10).drifted)
                 for h, m in _windows(rng, 20, n=2000, features=64, shift=0.5))
    assert caught >= 19
    h, m = next(_windows(rng, 1, n=2000, features=4, shift=0.5))
    finding = familywise_drift(h, m, alpha=0.01, base=0.1, eps=1e-4, min_rows_per_bin=10)
    assert finding.names == ("x0",) and finding.worst_psi is not None


def test_too_few_rows_give_no_drift_verdict_and_chi2_quantiles_are_close() -> None:
    h = [Histogram("x", [0.1] * 10, [5] * 10 + [0])]  # 50 rows < 10 per bin
    assert familywise_drift(h, 1000, alpha=0.01, base=0.1, eps=1e-4,
                            min_rows_per_bin=10).drifted is None
    assert abs(chi2_quantile(0.99, 9) - 21.666) < 0.1
    assert abs(chi2_quantile(0.999, 20) - 45.315) < 0.3
