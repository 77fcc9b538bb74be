"""Sequential change detection with a stated false-alarm rate: the e-CUSUM and its decisions.

Every detector of this package that raises alarms is built the same way, so their guarantees
and their explanations read alike:

1. **An e-value per update.** Each update (a window, or several small windows pooled, or one
   label) yields for each *component* ``k`` (a feature histogram and an alternative, say) a
   number ``e_k >= 0`` whose expectation is at most 1 when nothing has changed. Large values are
   evidence of a change; the log of ``e_k`` is additive over updates.
2. **A CUSUM over e-values, weighted by rows** (an *e-detector*, Shin, Ramdas & Rinaldo 2023)::

       C_k(t) = e_k(t) * max(C_k(t-1), n(t))        (n(t): rows or labels judged at update t)

   ``C_k`` is the largest product of e-values over any run of recent updates ending now, each
   run weighted by the rows of the update that starts it. It is dominated by the Shiryaev-Roberts
   sum ``R_k(t) = e_k(t) (R_k(t-1) + n(t))``, and ``R_k(t) - rows(t)`` is a supermartingale when
   nothing changes.
3. **One alarm threshold for the whole family.** An alarm is raised when the *mean* over the
   ``K`` components of ``C_k`` reaches ``1 / alpha``. The mean of Shiryaev-Roberts processes is
   again one, whatever the dependence between components (features can be correlated), so by
   optional stopping the expected number of rows before a false alarm is at least
   ``1 / alpha``: **at most ``alpha`` false alarms per row**, i.e. ``100,000 * alpha`` per
   100,000 rows, for any window size and any number of features. With the default
   ``alpha = 1e-7`` that is at most one false alarm per ten million rows per device (0.01 per
   100,000 rows). The bound is a ceiling: measured rates are far lower (docs/monitoring.md).
4. **After an alarm** the evidence starts again from nothing (so a second alarm needs new
   evidence), and the detector stays in the ``alarm`` state until ``clear_after`` judged
   updates in a row carry no evidence (the mean of their e-values is at most 1).

Large changes cross the threshold in one update (``e`` is astronomically large); small
persistent ones accumulate evidence over several updates; noise does not accumulate, because
its log e-values have a negative mean.

Everything here is numpy and ``math``: the error-rate and mean-shift detectors run on the device
too, which has no scipy (and ``statistics`` would cost the agent another 0.4 MiB). Normal
quantiles use Acklam's rational approximation refined by one Halley step on ``math.erfc``
(relative error below 1e-12, checked against scipy in the tests). The chi-square quantiles and
tails of the drift detector, which runs on the controller only, are scipy's
(:mod:`controller.monitoring.drift_test`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

#: Default false-alarm rate of every detector: at most this many false alarms per row (or label).
DEFAULT_ALPHA = 1e-7
#: Default probability that a reference sample is further from the truth than the detectors allow.
DEFAULT_REFERENCE_ALPHA = 1e-3
#: The same for the quality tests (error rate, mean shift): one reference figure per test, so
#: 1% of model versions may have a reference more optimistic than the allowance. For them the
#: null hypothesis is off by a fraction of a standard error, which a test needs hundreds of
#: thousands of labels to notice; a smaller value would cost a third more labels to prove a
#: 5-point loss against a reference of 5,000 labelled rows (bench/bench_detection.py).
DEFAULT_QUALITY_REFERENCE_ALPHA = 0.01
#: Judged updates without evidence that end an alarm state.
DEFAULT_CLEAR_AFTER = 3

_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
      1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
      6.680131188771972e01, -1.328068155288572e01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
      -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
      3.754408661907416e00)


def normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def normal_sf(z: float) -> float:
    """Upper tail ``P(Z > z)`` of a standard normal."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def normal_quantile(p: float) -> float:
    """The ``p`` quantile of a standard normal (Acklam, refined by one Halley step)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must lie in (0, 1)")
    lo = 0.02425
    if p < lo:
        q = math.sqrt(-2 * math.log(p))
        x = (((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / \
            ((((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1)
    elif p > 1 - lo:
        q = math.sqrt(-2 * math.log1p(-p))
        x = -(((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / \
            ((((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1)
    else:
        q = p - 0.5
        r = q * q
        x = (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * q / \
            (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1)
    e = normal_cdf(x) - p
    u = e * math.sqrt(2 * math.pi) * math.exp(x * x / 2)
    return x - u / (1 + x * u / 2)


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _from_json_float(x: Any) -> float:
    return -math.inf if x is None else float(x)


@dataclass(frozen=True)
class Decision:
    """What one update of a detector concluded, and why: the explanation record of an alert.

    ``alarm``: the evidence crossed the threshold in this update (after an alarm the evidence
    starts again from nothing, so a persisting change crosses again: each crossing is an
    ``alarm``). ``fired``: this alarm turned the detector from ``"watching"`` to ``"alarm"`` (what
    an alert should fire on). ``state``: ``"watching"`` or ``"alarm"`` after the update.
    ``cleared``: the alarm state ended with this update (what an alert should clear on). ``judged``: the update carried enough data to be judged (if not, it was kept pending
    and pooled with the next). ``score`` and ``threshold`` are natural logs of the evidence and
    of the alarm level (``score >= threshold`` alarms). ``explanation`` says which test, which
    statistic, on what data (see each detector); it is plain JSON.
    """

    detector: str
    alarm: bool
    state: str
    cleared: bool
    judged: bool
    score: float
    threshold: float
    detail: str
    explanation: dict[str, Any] = field(default_factory=dict)
    fired: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"detector": self.detector, "alarm": self.alarm, "fired": self.fired,
                "state": self.state,
                "cleared": self.cleared, "judged": self.judged,
                "score": _finite_or_none(self.score),
                "threshold": _finite_or_none(self.threshold),
                "detail": self.detail, "explanation": self.explanation}


class EvidenceCusum:
    """The rows-weighted e-CUSUM of ``components`` parallel e-value streams (module docstring).

    :meth:`add` takes the log e-values of one update and the rows it judged; :attr:`score` is the
    log of the mean of the components' CUSUM statistics; :meth:`crossed` compares it with
    ``log(1 / alpha)``. Component statistics start at ``-inf`` (no evidence).
    """

    __slots__ = ("alpha", "log_c", "run_rows", "run_updates")

    def __init__(self, components: int, alpha: float = DEFAULT_ALPHA) -> None:
        if components < 1:
            raise ValueError("an e-CUSUM needs at least one component")
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must lie in (0, 1)")
        self.alpha = float(alpha)
        self.log_c: npt.NDArray[np.float64] = np.full(components, -np.inf)
        self.run_rows: npt.NDArray[np.int64] = np.zeros(components, dtype=np.int64)
        self.run_updates: npt.NDArray[np.int64] = np.zeros(components, dtype=np.int64)

    @property
    def components(self) -> int:
        return int(self.log_c.size)

    @property
    def threshold(self) -> float:
        """``log(1 / alpha)``: the score at which an alarm is raised."""
        return -math.log(self.alpha)

    @property
    def score(self) -> float:
        """``log(mean_k C_k)``: ``-inf`` before any evidence."""
        if not np.isfinite(self.log_c).any():
            return -math.inf
        return float(np.logaddexp.reduce(self.log_c) - math.log(self.components))

    def add(self, log_e: npt.ArrayLike, rows: int | npt.ArrayLike,
            mask: npt.ArrayLike | None = None) -> None:
        """One update: ``log_e`` per component and the rows (>= 1) it judged, one number or one
        per component. ``mask`` selects the components this update concerns (the others are
        left exactly as they were)."""
        le = np.asarray(log_e, dtype=np.float64).reshape(-1)
        if le.size != self.components:
            raise ValueError(f"{le.size} log e-values for {self.components} components")
        sel = np.ones(self.components, dtype=bool) if mask is None else \
            np.asarray(mask, dtype=bool).reshape(-1)
        n = np.broadcast_to(np.asarray(rows, dtype=np.int64), (self.components,))
        if (n[sel] < 1).any():
            raise ValueError("an update judges at least one row")
        base = np.log(np.maximum(n, 1).astype(np.float64))
        cont = sel & (self.log_c >= base)
        fresh = sel & ~cont
        self.run_rows[cont] += n[cont]
        self.run_updates[cont] += 1
        self.run_rows[fresh] = n[fresh]
        self.run_updates[fresh] = 1
        self.log_c[sel] = le[sel] + np.maximum(self.log_c[sel], base[sel])

    def crossed(self) -> bool:
        return self.score >= self.threshold

    def leader(self) -> int:
        """The component with the most evidence."""
        return int(np.argmax(self.log_c))

    def reset(self) -> None:
        self.log_c[:] = -np.inf
        self.run_rows[:] = 0
        self.run_updates[:] = 0

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha,
                "log_c": [_finite_or_none(x) for x in self.log_c.tolist()],
                "run_rows": self.run_rows.tolist(), "run_updates": self.run_updates.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvidenceCusum:
        log_c = [_from_json_float(x) for x in d["log_c"]]
        out = cls(len(log_c), float(d["alpha"]))
        out.log_c[:] = log_c
        out.run_rows[:] = [int(x) for x in d["run_rows"]]
        out.run_updates[:] = [int(x) for x in d["run_updates"]]
        return out


class AlarmState:
    """The alarm/watching state machine shared by the detectors (module docstring, point 4)."""

    __slots__ = ("alarms", "clear_after", "good_streak", "in_alarm", "last_alarm")

    def __init__(self, clear_after: int = DEFAULT_CLEAR_AFTER) -> None:
        if clear_after < 1:
            raise ValueError("clear_after must be >= 1")
        self.clear_after = int(clear_after)
        self.in_alarm = False
        self.good_streak = 0
        self.alarms = 0
        self.last_alarm: dict[str, Any] | None = None

    @property
    def state(self) -> str:
        return "alarm" if self.in_alarm else "watching"

    def step(self, alarm: bool, window_log_e: float, record: dict[str, Any] | None) -> bool:
        """Record one judged update; returns ``True`` when the alarm state cleared."""
        if alarm:
            self.in_alarm = True
            self.good_streak = 0
            self.alarms += 1
            self.last_alarm = record
            return False
        if not self.in_alarm:
            return False
        if window_log_e <= 0.0:
            self.good_streak += 1
        else:
            self.good_streak = 0
        if self.good_streak >= self.clear_after:
            self.in_alarm = False
            self.good_streak = 0
            return True
        return False

    def to_dict(self) -> dict[str, Any]:
        return {"clear_after": self.clear_after, "in_alarm": self.in_alarm,
                "good_streak": self.good_streak, "alarms": self.alarms,
                "last_alarm": self.last_alarm}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlarmState:
        out = cls(int(d["clear_after"]))
        out.in_alarm = bool(d["in_alarm"])
        out.good_streak = int(d["good_streak"])
        out.alarms = int(d["alarms"])
        out.last_alarm = d.get("last_alarm")
        return out


def log_mean_exp(values: Sequence[float] | npt.NDArray[np.float64]) -> float:
    """``log(mean(exp(values)))``, ``-inf`` for an empty or all ``-inf`` input."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or not np.isfinite(arr).any():
        return -math.inf
    return float(np.logaddexp.reduce(arr) - math.log(arr.size))
