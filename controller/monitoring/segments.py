"""Is one segment (a device of a group, a site, a label group) significantly less accurate than
the rest? A one-sided test of each segment against the others pooled, Bonferroni over the
segments: at most ``alpha`` false findings per evaluation.

It is a fixed-sample test (exact: Fisher's conditional test, the hypergeometric tail from
scipy); evaluate it on a fixed range (the last day, say), not on a range growing with every
window (repeated looks at a growing range inflate its error rate). The controller's alert loop
runs it (:mod:`controller.monitoring.alert_store`); the device never does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scipy.stats import hypergeom


@dataclass(frozen=True)
class SegmentFinding:
    """One segment against the rest: accuracies, z statistic, p-value, and the verdict."""

    segment: str
    labels: int
    accuracy: float | None
    rest_labels: int
    rest_accuracy: float | None
    z: float | None
    p_value: float | None
    below: bool | None  # None: not judged (too few labels)

    def to_dict(self) -> dict[str, Any]:
        return {"segment": self.segment, "labels": self.labels, "accuracy": self.accuracy,
                "rest_labels": self.rest_labels, "rest_accuracy": self.rest_accuracy,
                "z": self.z, "p_value": self.p_value, "below": self.below}


def segment_test(segments: Mapping[str, tuple[int, int]], alpha: float = 0.01,
                 min_labels: int = 100) -> dict[str, Any]:
    """Which segments are significantly less accurate than the rest (module docstring)?

    ``segments`` maps a name to ``(correct, labelled)``. Each segment with ``min_labels`` (and
    at least as many elsewhere) is compared with all the others pooled by a one-sided exact
    conditional test (Fisher's: given the total of errors, the segment's errors are
    hypergeometric when every segment has the same error rate), each held at ``alpha / judged
    segments``. Exact, because the normal approximation of a proportion near 0.9 has too thin a
    lower tail at the small levels Bonferroni asks for (it gave 1.7% false findings at 1%).
    Returns ``{"findings": [...], "below": [names], "alpha", "judged", "level"}``, findings
    sorted by p-value; ``z`` is the normal-approximation statistic, for reading.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie in (0, 1)")
    totals = {k: (int(c), int(n)) for k, (c, n) in segments.items()}
    for name, (c, n) in totals.items():
        if n < 0 or not 0 <= c <= n:
            raise ValueError(f"segment {name!r}: {c} correct of {n}")
    all_c = sum(c for c, _ in totals.values())
    all_n = sum(n for _, n in totals.values())
    all_err = all_n - all_c
    judged = [k for k, (_, n) in totals.items() if n >= min_labels and all_n - n >= min_labels]
    level = alpha / max(1, len(judged))
    findings = []
    for name, (c, n) in totals.items():
        rc, rn = all_c - c, all_n - n
        acc = c / n if n else None
        racc = rc / rn if rn else None
        if name not in judged or acc is None or racc is None:
            findings.append(SegmentFinding(name, n, acc, rn, racc, None, None, None))
            continue
        pooled = all_c / all_n
        se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n + 1 / rn))
        z = (racc - acc) / se
        # P(errors >= observed): hypergeometric, n drawn of all_n holding all_err errors
        p = float(hypergeom.sf(n - c - 1, all_n, all_err, n))
        findings.append(SegmentFinding(name, n, acc, rn, racc, z, p, p < level))
    findings.sort(key=lambda f: (f.p_value is None, f.p_value if f.p_value is not None else 1.0))
    return {"alpha": alpha, "judged": len(judged), "level": level,
            "findings": [f.to_dict() for f in findings],
            "below": [f.segment for f in findings if f.below]}
