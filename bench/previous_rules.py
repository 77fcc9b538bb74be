"""The controller's drift rule before the sequential tests, kept for the detection benchmark only:
each window judged alone, every histogram's PSI against a size-aware threshold at a family-wise
false-alarm rate per window (Bonferroni over the histograms), and an alert after three bad windows
in a row. ``bench/bench_detection.py`` measures the sequential tests against it in the same run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from edgewise_monitoring.psi import psi


@dataclass(frozen=True)
class Histogram:
    """One histogram of a window against its reference: a feature or the prediction."""

    name: str
    expected: Sequence[float]  # reference proportions per bin
    counts: Sequence[int]  # the window's counts per bin, then the "other" bucket


@dataclass(frozen=True)
class DriftFinding:
    drifted: bool | None  # None: no histogram had enough rows for a verdict
    worst_psi: float | None
    worst_threshold: float | None
    names: tuple[str, ...]  # the histograms over their threshold


def chi2_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile of a chi-square with ``dof`` degrees of freedom (Wilson-Hilferty;
    within 1% of the exact value for dof >= 3 and p up to 1 - 1e-6)."""
    z = NormalDist().inv_cdf(p)
    k = max(dof, 1)
    return float(k * max(0.0, 1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3)


def familywise_drift(histograms: Sequence[Histogram], reference_n: int, *, alpha: float,
                     base: float, eps: float, min_rows_per_bin: int) -> DriftFinding:
    """Is a window drifted, with a false-alarm rate of at most ``alpha`` for the whole window?

    Without drift ``PSI * (1/n + 1/m)**-1`` is about chi-square with ``bins - 1`` degrees of
    freedom (:mod:`edgewise_monitoring.psi`). The device's own verdicts hold each histogram
    at its 99th percentile (2.5 x the noise floor): a model with k features then raises a false
    verdict in about k% of its windows, 47% for 64 features. Here each of the k histograms
    judged is held at its ``1 - alpha/k`` quantile (Bonferroni), so the window as a whole
    errs with probability at most ``alpha``; the base threshold (``base``, 0.1) still applies
    to large windows, whose noise is far below it. Histograms with fewer than
    ``min_rows_per_bin`` rows per reference bin are not judged.
    """
    judged = []
    for h in histograms:
        n = int(sum(h.counts))
        bins = max(1, len(h.expected))
        if n > 0 and reference_n > 0 and n >= min_rows_per_bin * bins:
            judged.append((h, n, bins))
    if not judged:
        return DriftFinding(None, None, None, ())
    level = 1.0 - alpha / len(judged)
    worst: tuple[float, float] | None = None
    names = []
    for h, n, bins in judged:
        value = psi(h.expected, h.counts, eps)
        threshold = max(base, chi2_quantile(level, bins - 1) * (1.0 / n + 1.0 / reference_n))
        if value > threshold:
            names.append(h.name)
        if worst is None or value / threshold > worst[0] / worst[1]:
            worst = (value, threshold)
    assert worst is not None
    return DriftFinding(bool(names), worst[0], worst[1], tuple(names))

