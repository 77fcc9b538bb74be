"""Two arms compared with a test that may be looked at every window: a normal-mixture mSPRT.

An experiment compares a *control* (the served version) with a *candidate* on accuracy (delayed
labels) and on latency. The operator looks at the result every minute, and the test must stay
honest however often it is looked at: a fixed-sample z-test checked after every window declares
a winner between two equal models far more often than its nominal 5 %. The test here is a
*mixture sequential probability ratio test* (Johari, Koomen, Pekelis & Walsh, "Peeking at A/B
tests", KDD 2017; Robbins 1970), whose dual is a *confidence sequence*: an interval for the
difference that covers the true difference at every window at once, with probability at least
``1 - alpha``, so stopping whenever it excludes zero keeps the error rate at ``alpha``.

**The statistic.** After ``n_a`` and ``n_b`` labelled rows the estimate of the difference
``delta = acc_candidate - acc_control`` is ``d = p_b - p_a`` with variance
``V = p_a (1 - p_a) / n_a + p_b (1 - p_b) / n_b`` (plug-in, each proportion shrunk as
``(x + 1/2) / (n + 1)`` so a run of all-right rows never has variance zero). With a normal prior
of variance ``tau2`` on ``delta`` the mixture likelihood ratio against ``delta = 0`` is::

    Lambda = sqrt(V / (V + tau2)) * exp(tau2 * d**2 / (2 V (V + tau2)))

and ``Lambda >= 1/alpha`` exactly when ``d`` lies outside ``+- r`` with::

    r = sqrt(V (V + tau2) / tau2 * (2 log(1/alpha) + log((V + tau2) / V)))

so ``d +- r`` is the confidence sequence. The variance is plugged in, which makes the guarantee
asymptotic (Waudby-Smith et al., "Time-uniform central limit theory", 2023); no verdict is given
before ``min_rows`` rows per arm, and the false-positive rate is *measured* by the unit tests
(equal arms, hundreds of seeds, a look after every window) rather than assumed.

**Paired rows (shadow mode).** When both versions answer the same rows, each labelled row gives
``d_i = right_b - right_a`` in ``{-1, 0, 1}``; the estimate is the mean of ``d_i`` and its
variance ``var(d) / n``, far smaller than the unpaired one when the two mostly agree.

**Design.** ``tau2 = mde**2`` (the mixture is centred on effects of the size the operator cares
about). :meth:`Design.predicted_rows` is the rows per arm by which an effect of exactly ``mde``
is declared with probability at least ``1 - beta``: the smallest ``n`` where
``mde - z(1 - beta) sqrt(V_n) >= r_n`` (a conservative figure: the test may cross earlier).

**Stopping rule** (:func:`judge`): the interval excludes zero -> ``candidate_better`` or
``control_better``; it lies inside ``(-mde, +mde)`` -> ``equivalent`` (no difference the
operator cares about, with the same guarantee); ``max_rows`` per arm reached first ->
``inconclusive``; else ``running``. Latency is compared the same way on the mean latency per row
(``faster``/``slower``/``same``/``running``); it never decides the accuracy verdict.

Standard library only (``math``): the device may compute a verdict for its own shadow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edgewise_monitoring.sequential import normal_quantile

#: Rows per arm before any verdict: the plug-in variance needs a few dozen labelled rows.
DEFAULT_MIN_ROWS = 100

VERDICTS = ("running", "candidate_better", "control_better", "equivalent", "inconclusive")
LATENCY_VERDICTS = ("running", "faster", "slower", "same")


class DesignError(ValueError):
    """A design that cannot be tested (an error rate outside (0, 1), an effect <= 0...)."""


@dataclass(frozen=True)
class Design:
    """What the operator configures: the smallest accuracy difference worth finding (``mde``,
    absolute, 0.02 is two points), the false-positive rate ``alpha`` (declaring a winner between
    equal arms, at any of the looks), the miss rate ``beta`` at an effect of ``mde`` within the
    predicted rows, the control's expected accuracy (for the predicted rows only), and a ceiling
    ``max_rows`` per arm after which the experiment stops ``inconclusive`` (0: predicted rows
    times three)."""

    mde: float = 0.05
    alpha: float = 0.05
    beta: float = 0.2
    baseline_accuracy: float = 0.8
    min_rows: int = DEFAULT_MIN_ROWS
    max_rows: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.mde < 1.0:
            raise DesignError(f"minimum detectable effect must lie in (0, 1), got {self.mde}")
        if not 0.0 < self.alpha < 0.5:
            raise DesignError(f"alpha must lie in (0, 0.5), got {self.alpha}")
        if not 0.0 < self.beta < 0.5:
            raise DesignError(f"beta must lie in (0, 0.5), got {self.beta}")
        if not 0.0 < self.baseline_accuracy < 1.0:
            raise DesignError("baseline accuracy must lie in (0, 1), got "
                              f"{self.baseline_accuracy}")
        if self.baseline_accuracy + self.mde >= 1.0:
            raise DesignError(f"baseline accuracy {self.baseline_accuracy} plus the effect "
                              f"{self.mde} leaves no room below 1")
        if self.min_rows < 1 or self.max_rows < 0:
            raise DesignError("min_rows must be >= 1 and max_rows >= 0")

    @property
    def tau2(self) -> float:
        return self.mde * self.mde

    def predicted_rows(self, *, paired_disagreement: float | None = None) -> int:
        """Rows per arm by which an effect of ``mde`` is declared with probability ``1 - beta``.

        Unpaired (A/B) by default; ``paired_disagreement`` (the share of rows on which the two
        versions' correctness differs, shadow mode) gives the paired figure instead."""
        p_a = self.baseline_accuracy
        p_b = p_a + self.mde
        if paired_disagreement is None:
            unit = p_a * (1 - p_a) + p_b * (1 - p_b)
        else:
            q = max(paired_disagreement, self.mde)
            unit = q - self.mde * self.mde
        z_beta = normal_quantile(1 - self.beta)

        def detects(n: int) -> bool:
            v = unit / n
            return self.mde - z_beta * math.sqrt(v) >= cs_radius(v, self.tau2, self.alpha)

        lo, hi = 1, 2
        while not detects(hi):
            lo, hi = hi, hi * 2
            if hi > 10**9:
                raise DesignError("the design needs more than a billion rows per arm")
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if detects(mid):
                hi = mid
            else:
                lo = mid
        return max(hi, self.min_rows)

    @property
    def ceiling(self) -> int:
        return self.max_rows or 3 * self.predicted_rows()

    def to_dict(self) -> dict[str, Any]:
        return {"mde": self.mde, "alpha": self.alpha, "beta": self.beta,
                "baseline_accuracy": self.baseline_accuracy, "min_rows": self.min_rows,
                "max_rows": self.max_rows}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Design:
        return cls(mde=float(d["mde"]), alpha=float(d["alpha"]), beta=float(d["beta"]),
                   baseline_accuracy=float(d["baseline_accuracy"]),
                   min_rows=int(d["min_rows"]), max_rows=int(d["max_rows"]))


def cs_radius(variance: float, tau2: float, alpha: float) -> float:
    """Half-width of the normal-mixture confidence sequence (module docstring)."""
    if variance <= 0.0:
        return 0.0
    return math.sqrt(variance * (variance + tau2) / tau2 *
                     (2.0 * math.log(1.0 / alpha) + math.log((variance + tau2) / variance)))


def log_mixture_ratio(estimate: float, variance: float, tau2: float) -> float:
    """``log Lambda``: the always-valid evidence against "no difference"."""
    if variance <= 0.0:
        return 0.0
    return 0.5 * math.log(variance / (variance + tau2)) + \
        tau2 * estimate * estimate / (2.0 * variance * (variance + tau2))


# -- tallies: additive per-window counts, merged across windows and devices ------------------


@dataclass
class ArmTally:
    """One arm's labelled rows and latency, additive: ``n`` labelled, ``correct`` of them right;
    ``calls`` rows timed, ``latency_sum``/``latency_sumsq`` in ms per row."""

    n: int = 0
    correct: int = 0
    calls: int = 0
    latency_sum: float = 0.0
    latency_sumsq: float = 0.0

    def add(self, other: ArmTally) -> None:
        self.n += other.n
        self.correct += other.correct
        self.calls += other.calls
        self.latency_sum += other.latency_sum
        self.latency_sumsq += other.latency_sumsq

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n if self.n else None

    @property
    def shrunk(self) -> float:
        return (self.correct + 0.5) / (self.n + 1.0)

    def accuracy_interval(self, alpha: float, tau2: float) -> tuple[float, float] | None:
        """An always-valid interval for this arm's own accuracy (same mixture)."""
        if not self.n:
            return None
        p = self.shrunk
        r = cs_radius(p * (1 - p) / self.n, tau2, alpha)
        acc = self.correct / self.n
        return max(0.0, acc - r), min(1.0, acc + r)

    @property
    def latency_mean(self) -> float | None:
        return self.latency_sum / self.calls if self.calls else None

    @property
    def latency_var(self) -> float:
        if self.calls < 2:
            return 0.0
        mean = self.latency_sum / self.calls
        return max(0.0, (self.latency_sumsq - self.calls * mean * mean) / (self.calls - 1))

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "correct": self.correct, "calls": self.calls,
                "latency_sum": self.latency_sum, "latency_sumsq": self.latency_sumsq}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArmTally:
        return cls(int(d.get("n", 0)), int(d.get("correct", 0)), int(d.get("calls", 0)),
                   float(d.get("latency_sum", 0.0)), float(d.get("latency_sumsq", 0.0)))


@dataclass
class PairedTally:
    """Labelled rows both versions answered (shadow mode): ``n`` rows, ``d_sum`` and ``d_abs``
    the sum of ``right_candidate - right_control`` and of its absolute value (its square)."""

    n: int = 0
    d_sum: int = 0
    d_abs: int = 0

    def add(self, other: PairedTally) -> None:
        self.n += other.n
        self.d_sum += other.d_sum
        self.d_abs += other.d_abs

    def observe(self, control_right: bool, candidate_right: bool) -> None:
        d = int(candidate_right) - int(control_right)
        self.n += 1
        self.d_sum += d
        self.d_abs += abs(d)

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "d_sum": self.d_sum, "d_abs": self.d_abs}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PairedTally:
        return cls(int(d.get("n", 0)), int(d.get("d_sum", 0)), int(d.get("d_abs", 0)))


# -- the verdict ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """The result of one look: the effect (candidate minus control), its always-valid interval,
    the log of the mixture ratio against "no difference", and the verdict."""

    verdict: str
    effect: float | None
    low: float | None
    high: float | None
    log_evidence: float
    rows: int  # the smaller arm's labelled rows (or paired rows)
    predicted_rows: int
    paired: bool

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "effect": self.effect, "low": self.low,
                "high": self.high, "log_evidence": self.log_evidence, "rows": self.rows,
                "predicted_rows": self.predicted_rows, "paired": self.paired}


@dataclass(frozen=True)
class LatencyComparison:
    """Mean latency per row, candidate minus control (ms), its always-valid interval, verdict."""

    verdict: str
    effect_ms: float | None
    low_ms: float | None
    high_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "effect_ms": self.effect_ms, "low_ms": self.low_ms,
                "high_ms": self.high_ms}


def _verdict(design: Design, rows: int, effect: float, low: float, high: float) -> str:
    if rows < design.min_rows:
        return "running"
    if low > 0.0:
        return "candidate_better"
    if high < 0.0:
        return "control_better"
    if -design.mde < low and high < design.mde:
        return "equivalent"
    if rows >= design.ceiling:
        return "inconclusive"
    return "running"


def judge(design: Design, control: ArmTally, candidate: ArmTally,
          paired: PairedTally | None = None) -> Comparison:
    """One look at the accuracy difference (module docstring). With ``paired`` rows (shadow
    mode), the paired estimate is used; else the two arms' independent rows."""
    tau2 = design.tau2
    if paired is not None:
        n = paired.n
        predicted = design.predicted_rows(
            paired_disagreement=(paired.d_abs + 0.5) / (n + 1.0) if n else None)
        if n == 0:
            return Comparison("running", None, None, None, 0.0, 0, predicted, True)
        mean = paired.d_sum / n
        # the shrunk second moment keeps a run of identical answers from variance zero
        second = (paired.d_abs + 0.5) / (n + 1.0)
        variance = max(second - mean * mean, 0.25 / (n + 1.0)) / n
        estimate = mean
    else:
        n = min(control.n, candidate.n)
        predicted = design.predicted_rows()
        if n == 0:
            return Comparison("running", None, None, None, 0.0, 0, predicted, False)
        p_a, p_b = control.shrunk, candidate.shrunk
        variance = p_a * (1 - p_a) / control.n + p_b * (1 - p_b) / candidate.n
        estimate = candidate.correct / candidate.n - control.correct / control.n
    r = cs_radius(variance, tau2, design.alpha)
    low, high = estimate - r, estimate + r
    return Comparison(_verdict(design, n, estimate, low, high), estimate, low, high,
                      log_mixture_ratio(estimate, variance, tau2), n, predicted,
                      paired is not None)


def judge_latency(design: Design, control: ArmTally, candidate: ArmTally) -> LatencyComparison:
    """Mean latency per row compared with the same mixture, ``tau2`` the control's variance
    (effects of about one standard deviation of a call), at the design's ``alpha``."""
    if control.calls < design.min_rows or candidate.calls < design.min_rows:
        return LatencyComparison("running", None, None, None)
    mean_a, mean_b = control.latency_mean, candidate.latency_mean
    assert mean_a is not None and mean_b is not None
    effect = mean_b - mean_a
    variance = control.latency_var / control.calls + candidate.latency_var / candidate.calls
    if variance <= 0.0:
        verdict = "same" if effect == 0.0 else ("slower" if effect > 0 else "faster")
        return LatencyComparison(verdict, effect, effect, effect)
    tau2 = max(control.latency_var, candidate.latency_var, 1e-12)
    r = cs_radius(variance, tau2, design.alpha)
    low, high = effect - r, effect + r
    if low > 0.0:
        verdict = "slower"
    elif high < 0.0:
        verdict = "faster"
    elif high - low < 0.1 * max(mean_a, 1e-9):
        verdict = "same"
    else:
        verdict = "running"
    return LatencyComparison(verdict, effect, low, high)
