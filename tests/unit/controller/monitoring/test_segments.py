"""The segment test: its false-finding rate, a bad segment found, too few labels not judged,
and its p-values those of Fisher's exact test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import fisher_exact

from controller.monitoring.segments import segment_test


def test_segment_test_null_rate_and_a_bad_segment() -> None:
    rng = np.random.default_rng(1)
    false_findings = 0
    for _ in range(300):
        segments = {f"d{i}": (int(rng.binomial(500, 0.9)), 500) for i in range(20)}
        false_findings += bool(segment_test(segments, alpha=0.01)["below"])
    assert false_findings / 300 <= 0.02  # alpha 0.01 per evaluation (Bonferroni: conservative)
    segments = {f"d{i}": (int(rng.binomial(500, 0.9)), 500) for i in range(20)}
    segments["bad"] = (int(rng.binomial(500, 0.8)), 500)
    out = segment_test(segments, alpha=0.01)
    assert out["below"] == ["bad"] and out["findings"][0]["segment"] == "bad"
    few = segment_test({"a": (5, 10), "b": (900, 1000)})
    assert few["below"] == [] and few["judged"] == 0


def test_p_values_are_fishers_exact_test_of_the_segment_against_the_rest() -> None:
    segments = {"a": (400, 500), "b": (455, 500), "c": (900, 1000), "d": (181, 200)}
    findings = {f["segment"]: f for f in segment_test(segments)["findings"]}
    for name, (correct, n) in segments.items():
        rest_correct = sum(c for k, (c, _) in segments.items() if k != name)
        rest_n = sum(m for k, (_, m) in segments.items() if k != name)
        table = [[n - correct, correct], [rest_n - rest_correct, rest_correct]]
        expected = fisher_exact(table, alternative="greater").pvalue
        assert findings[name]["p_value"] == pytest.approx(expected, rel=1e-9)
    assert segment_test(segments)["below"] == ["a"]


def test_bad_input_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="alpha must lie in"):
        segment_test({"a": (1, 2)}, alpha=0.0)
    with pytest.raises(ValueError, match="segment 'a': 3 correct of 2"):
        segment_test({"a": (3, 2)})
