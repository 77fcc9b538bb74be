"""Loss, bias and segments: what delayed labels say beyond accuracy.

* :class:`ProbabilisticLoss`: log loss and Brier score of the predicted class's probability
  against whether the prediction was right (the *top-label* log loss and Brier score; for a
  binary model they equal the usual binary log loss and Brier score). Additive sums, in the
  window summary, so they merge like every other figure. They move before accuracy does when a
  model becomes less sure of its right answers or more sure of its wrong ones.
* :func:`prediction_bias`: per class, the share of predictions against the share of labels over
  the same labelled rows, with a McNemar-type test of their difference (the off-diagonal counts
  of the confusion matrix: ``FP_c`` against ``FN_c``).
* :func:`segment_test`: is one segment (a device of a group, a site, a label group) significantly
  less accurate than the rest? A one-sided test of each segment against the others pooled,
  Bonferroni over the segments: at most ``alpha`` false findings per evaluation.
  It is a fixed-sample test (exact: Fisher's conditional test); evaluate it on a fixed range (the last day, say), not on a range
  growing with every window (repeated looks at a growing range inflate its error rate).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgewise_monitoring.accuracy import ClassificationScore
from edgewise_monitoring.labels import label_sort_key
from edgewise_monitoring.sequential import normal_sf

_P_CLIP = 1e-15


class ProbabilisticLoss:
    """Additive sums for the top-label log loss and Brier score (module docstring)."""

    __slots__ = ("n", "sum_brier", "sum_log_loss")

    def __init__(self) -> None:
        self.n = 0
        self.sum_log_loss = 0.0
        self.sum_brier = 0.0

    def add(self, correct: npt.ArrayLike, confidence: npt.ArrayLike) -> None:
        """``correct``: 1 when the prediction was right; ``confidence``: its probability.
        Rows with a non-finite confidence are skipped."""
        y = np.asarray(correct, dtype=np.float64).reshape(-1)
        p = np.asarray(confidence, dtype=np.float64).reshape(-1)
        if y.size != p.size:
            raise ValueError(f"{y.size} outcomes but {p.size} confidences")
        ok = np.isfinite(p)
        y, p = y[ok], np.clip(p[ok], 0.0, 1.0)
        q = np.clip(p, _P_CLIP, 1 - _P_CLIP)
        self.n += int(y.size)
        self.sum_log_loss += float(-np.sum(y * np.log(q) + (1 - y) * np.log(1 - q)))
        self.sum_brier += float(np.sum((p - y) ** 2))

    def merge(self, other: ProbabilisticLoss) -> None:
        self.n += other.n
        self.sum_log_loss += other.sum_log_loss
        self.sum_brier += other.sum_brier

    def log_loss(self) -> float | None:
        return self.sum_log_loss / self.n if self.n else None

    def brier(self) -> float | None:
        return self.sum_brier / self.n if self.n else None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "sum_log_loss": self.sum_log_loss, "sum_brier": self.sum_brier}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbabilisticLoss:
        out = cls()
        out.n = int(d["n"])
        out.sum_log_loss = float(d["sum_log_loss"])
        out.sum_brier = float(d["sum_brier"])
        if out.n < 0 or not (math.isfinite(out.sum_log_loss) and math.isfinite(out.sum_brier)):
            raise ValueError("loss sums must be finite and n >= 0")
        return out


def prediction_bias(score: ClassificationScore | Mapping[str, Any], alpha: float = 0.01,
                    min_labels: int = 30) -> dict[str, Any]:
    """Predicted class shares against label shares over the same labelled predictions.

    For class ``c``: ``difference = (FP_c - FN_c) / n``. Without bias ``FP_c`` and ``FN_c`` are
    two sides of a symmetric split of ``FP_c + FN_c`` mistakes, so ``z = (FP_c - FN_c) /
    sqrt(FP_c + FN_c)`` is about standard normal; a class is ``biased`` when its two-sided
    p-value is under ``alpha / classes`` (Bonferroni). Nothing is judged below ``min_labels``.
    """
    s = score if isinstance(score, ClassificationScore) else \
        ClassificationScore.from_dict(dict(score))
    n = s.count
    classes = []
    stats = s.per_class()
    judged = n >= min_labels and len(stats) > 0
    level = alpha / max(1, len(stats))
    for label in sorted(stats, key=label_sort_key):
        st = stats[label]
        fp, fn = st["fp"], st["fn"]
        predicted = (st["tp"] + fp) / n if n else None
        actual = (st["tp"] + fn) / n if n else None
        p_value = None
        if judged and fp + fn > 0:
            z = (fp - fn) / math.sqrt(fp + fn)
            p_value = min(1.0, 2.0 * normal_sf(abs(z)))
        classes.append({"label": label, "predicted_share": predicted, "label_share": actual,
                        "difference": (fp - fn) / n if n else None, "p_value": p_value,
                        "biased": None if not judged else bool(p_value is not None
                                                               and p_value < level)})
    return {"n": n, "judged": judged, "alpha": alpha, "classes": classes,
            "biased_classes": [c["label"] for c in classes if c["biased"]]}


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
        p = hypergeometric_sf(n - c, all_n, all_err, n)
        findings.append(SegmentFinding(name, n, acc, rn, racc, z, p, p < level))
    findings.sort(key=lambda f: (f.p_value is None, f.p_value if f.p_value is not None else 1.0))
    return {"alpha": alpha, "judged": len(judged), "level": level,
            "findings": [f.to_dict() for f in findings],
            "below": [f.segment for f in findings if f.below]}


def hypergeometric_sf(k: int, total: int, marked: int, drawn: int) -> float:
    """``P(X >= k)`` for ``X`` the marked items among ``drawn`` taken from ``total`` holding
    ``marked`` (log-gamma terms summed from the nearer end until they no longer matter)."""
    lo, hi = max(0, drawn - (total - marked)), min(drawn, marked)
    if k <= lo:
        return 1.0
    if k > hi:
        return 0.0

    def log_pmf(x: int) -> float:
        return (_log_comb(marked, x) + _log_comb(total - marked, drawn - x)
                - _log_comb(total, drawn))

    mean = drawn * marked / total if total else 0.0
    if k > mean:  # upper tail, terms decrease from k on
        acc = 0.0
        for x in range(k, hi + 1):
            t = math.exp(log_pmf(x))
            acc += t
            if t < acc * 1e-16:
                break
        return min(1.0, acc)
    acc = 0.0  # lower tail P(X <= k - 1), terms decrease downward from k - 1
    for x in range(k - 1, lo - 1, -1):
        t = math.exp(log_pmf(x))
        acc += t
        if t < acc * 1e-16:
            break
    return max(0.0, 1.0 - acc)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
