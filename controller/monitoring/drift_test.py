"""Sequential drift detection over window histograms, with a stated false-alarm rate.

**What it replaces.** A verdict per window held against a fixed PSI threshold, fired after
three bad windows in a row: slow for large shifts (three windows at least), blind to small ones
(a 0.25 sd shift has a PSI of about 0.06, under the 0.1 floor), and with a false-alarm rate that
depends on the window size and the number of features.

**The statistic.** For each histogram (each feature, and the prediction) the window's counts
``o`` over its ``k`` reference bins are compared with the reference proportions ``p`` by the
likelihood-ratio chi-square ``G = 2 sum o_i ln(o_i / (n p_i))`` (``n = sum o``). Without drift
``G`` is about chi-square with ``d = k - 1`` degrees of freedom whatever ``n`` is: this is the
*null distribution at the window's sample size* (PSI is about ``G / n`` for small shifts, whence
its noise floor ``(k - 1)(1/n + 1/m)``). NaN values (the ``other`` bucket) are left out of
``G`` and reported: missing values are a data-quality matter, not evidence of drift.

**The reference is a sample too.** The reference proportions come from ``m`` rows, so they are
off the true ones by about ``d / m`` in chi-square distance; over many windows that offset looks
like a small persistent shift, and a test that ignores it would eventually alarm on every
device. The null hypothesis is therefore composite: *the device's distribution lies within the
reference's sampling uncertainty*, i.e. ``m * chi2-distance(true, p) <= q``, ``q`` the
chi-square quantile at ``1 - reference_alpha`` (scipy's, exact). Under it ``G`` is at most noncentral
chi-square with noncentrality ``lambda_max = n q / m``.

**The e-value.** For a tilt ``theta`` in (0, 1/2), a noncentral chi-square has
``E[exp(theta G)] = (1 - 2 theta)^(-d/2) exp(theta lambda / (1 - 2 theta))``, so::

    log e = theta G + (d/2) ln(1 - 2 theta) - theta lambda_max / (1 - 2 theta)

has expectation at most 1 under the null (for the chi-square approximation of ``G``). Small
``theta`` suits small shifts, large ``theta`` large ones: every histogram gets one e-value per
``theta`` in ``thetas`` (default 0.1, 0.2, 0.3, 0.4), each a component of one rows-weighted
e-CUSUM (:mod:`edgewise_monitoring.sequential`). The family of features is handled by that
e-CUSUM's threshold on the *mean* of its components, valid under any dependence between
features: with 8 features and the prediction there are 36 components, and the family costs
``ln 36 = 3.6`` nats of evidence once, not a Bonferroni factor per window.

**False alarms.** At most ``alpha`` per row (default 1e-7: at most 0.01 false alarms per
100,000 rows per device, whatever the window size), conditional on the reference being inside
its ``reference_alpha`` ball, which happens with probability ``1 - reference_alpha`` per
histogram once per model version. Measured (tests/unit/controller/monitoring, bench): none in
millions of no-change rows.

**Small windows, rare bins.** A histogram is judged once it holds ``min_rows_per_bin`` rows per
bin and ``min_expected`` expected rows in its rarest bin; until then its counts stay *pending*
and pool with the next windows (nothing is thrown away, nothing is judged on a handful of rows).
Reference bins rarer than ``rare_proportion`` are merged into one, so a rare class of the
prediction histogram does not make the chi-square approximation lie. A histogram with a single
bin (a feature constant in the reference) cannot be judged and is reported as such.

One module on purpose, about 450 lines: the drift detector is one class whose histograms,
reference allowance and e-values only make sense together; the e-CUSUM it feeds is in
:mod:`edgewise_monitoring.sequential`. It lives on the controller, beside the watch that runs it:
the device never judges drift, and its quantiles and p-values come from scipy, which the device
does not install.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import chi2

from edgewise_monitoring.errors import MonitoringError
from edgewise_monitoring.evidence import PREDICTION, WindowEvidence, pool
from edgewise_monitoring.psi import psi
from edgewise_monitoring.reference import ReferenceProfile
from edgewise_monitoring.sequential import (
    DEFAULT_ALPHA,
    DEFAULT_CLEAR_AFTER,
    DEFAULT_REFERENCE_ALPHA,
    AlarmState,
    Decision,
    EvidenceCusum,
    log_mean_exp,
)

DEFAULT_THETAS = (0.1, 0.2, 0.3, 0.4)


@dataclass(frozen=True)
class DriftSettings:
    """Settings of :class:`DriftDetector` (names as the controller should expose them, prefixed
    ``drift_``). ``alpha``: false alarms per row at most. ``reference_alpha``: how far the
    reference may be from the truth (smaller: more tolerant, less sensitive to tiny shifts).
    ``thetas``: the chi-square tilts (alternatives). ``min_rows_per_bin``, ``min_expected``,
    ``rare_proportion``: when a histogram is judged (module docstring). ``clear_after``: judged
    updates without evidence that end an alarm."""

    alpha: float = DEFAULT_ALPHA
    reference_alpha: float = DEFAULT_REFERENCE_ALPHA
    thetas: tuple[float, ...] = DEFAULT_THETAS
    min_rows_per_bin: int = 10
    min_expected: float = 5.0
    rare_proportion: float = 0.01
    clear_after: int = DEFAULT_CLEAR_AFTER

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1 or not 0 < self.reference_alpha < 1:
            raise ValueError("alpha and reference_alpha must lie in (0, 1)")
        if not self.thetas or not all(0 < t < 0.5 for t in self.thetas):
            raise ValueError("thetas must lie in (0, 0.5)")
        if self.min_rows_per_bin < 1 or self.min_expected <= 0 or self.clear_after < 1:
            raise ValueError("min_rows_per_bin, min_expected and clear_after must be positive")
        if not 0 <= self.rare_proportion < 0.5:
            raise ValueError("rare_proportion must lie in [0, 0.5)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["thetas"] = list(self.thetas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DriftSettings:
        return cls(**{**d, "thetas": tuple(float(t) for t in d["thetas"])})


class _Histogram:
    """One reference histogram: its bins grouped (rare ones merged) and its pending counts."""

    __slots__ = ("dof", "groups", "min_rows", "name", "other_total", "pending", "pending_other",
                 "proportions", "q_props")

    def __init__(self, name: str, proportions: Sequence[float], settings: DriftSettings) -> None:
        self.name = name
        p = np.asarray(proportions, dtype=np.float64)
        if p.ndim != 1 or p.size == 0 or (p < 0).any() or not np.isfinite(p).all():
            raise MonitoringError(f"histogram {name!r}: bad reference proportions")
        p = p / p.sum() if p.sum() > 0 else np.full(p.size, 1.0 / p.size)
        self.proportions = p
        # group index per bin: regular bins keep their own group, rare bins share one
        rare = p < settings.rare_proportion
        groups = np.zeros(p.size, dtype=np.intp)
        regular = np.flatnonzero(~rare)
        groups[regular] = np.arange(regular.size)
        n_groups = regular.size
        if rare.any():
            if p[rare].sum() >= settings.rare_proportion or regular.size == 0:
                groups[rare] = n_groups
                n_groups += 1
            else:  # the rare bins together are still rare: join the smallest regular bin
                groups[rare] = groups[regular[np.argmin(p[regular])]]
        self.groups = groups
        self.q_props = np.bincount(groups, weights=p, minlength=n_groups)
        self.dof = int(n_groups - 1)
        self.min_rows = 0
        if self.dof >= 1:
            self.min_rows = int(math.ceil(max(settings.min_rows_per_bin * n_groups,
                                              settings.min_expected / float(self.q_props.min()))))
        self.pending = np.zeros(p.size, dtype=np.int64)
        self.pending_other = 0
        self.other_total = 0

    @property
    def testable(self) -> bool:
        return self.dof >= 1


@dataclass(frozen=True)
class _Judged:
    name: str
    n: int
    g: float
    dof: int
    psi: float
    other: int
    allowance: float  # lambda_max
    log_e: npt.NDArray[np.float64]


class DriftDetector:
    """Drift detector over feature and prediction histograms (module docstring), river style:
    feed it windows, read its decisions; its state is JSON (:meth:`to_dict`).

    Build it with :meth:`from_profile` (the manifest's ``reference_profile``) or from explicit
    ``names``/``proportions``. Feed it with :meth:`update` (one window's or a pooled group's
    :class:`~edgewise_monitoring.evidence.WindowEvidence`), or :meth:`update_counts` (raw counts
    in histogram order). One detector per (device, model version), and one per fleet group and
    version fed with the group's pooled evidence (:func:`~edgewise_monitoring.evidence.pool`).
    """

    kind = "drift"

    def __init__(self, names: Sequence[str], proportions: Sequence[Sequence[float]],
                 reference_n: int, settings: DriftSettings | None = None, *,
                 profile_id: str | None = None) -> None:
        if len(names) != len(proportions):
            raise ValueError("one name per histogram")
        if len(set(names)) != len(names):
            raise ValueError("histogram names must be distinct")
        if reference_n < 1:
            raise ValueError("reference_n must be positive")
        self.settings = settings or DriftSettings()
        self.reference_n = int(reference_n)
        self.profile_id = profile_id
        self.hists = [_Histogram(str(n), p, self.settings) for n, p in zip(names, proportions,
                                                                           strict=True)]
        self._thetas = np.asarray(self.settings.thetas, dtype=np.float64)
        self._index = {h.name: i for i, h in enumerate(self.hists)}
        self._testable = [i for i, h in enumerate(self.hists) if h.testable]
        # q per testable histogram: the chi-square quantile bounding the reference's error
        self._q = {i: float(chi2.ppf(1.0 - self.settings.reference_alpha, self.hists[i].dof))
                   for i in self._testable}
        self.cusum = EvidenceCusum(max(1, len(self._testable) * self._thetas.size),
                                   self.settings.alpha)
        self.alarm_state = AlarmState(self.settings.clear_after)
        # the latest judged figures of each histogram, for the explanation of its evidence
        self._last: dict[str, dict[str, Any]] = {}
        self.stats: dict[str, int] = {"updates": 0, "judged": 0, "rows_judged": 0,
                                      "nan_values": 0, "rejected": 0}

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any] | ReferenceProfile,
                     settings: DriftSettings | None = None) -> DriftDetector:
        """A detector for every feature and the prediction of a reference profile.

        A profile without histograms (an old model version without one) gives a detector that
        judges nothing and says so in every decision.
        """
        ref = profile if isinstance(profile, ReferenceProfile) else \
            ReferenceProfile.from_dict(dict(profile))
        names = [f.name for f in ref.features]
        props: list[Sequence[float]] = [f.proportions for f in ref.features]
        if ref.prediction is not None:
            names.append(PREDICTION)
            props.append(ref.prediction.proportions)
        return cls(names, props, max(ref.n, 1), settings, profile_id=ref.profile_id)

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hists]

    @property
    def threshold(self) -> float:
        """Alarm level of the score (natural log): ``log(1 / alpha)``."""
        return self.cusum.threshold

    @property
    def state(self) -> str:
        return self.alarm_state.state

    # -- feeding ------------------------------------------------------------------------------

    def update(self, evidence: WindowEvidence | Iterable[WindowEvidence]) -> Decision:
        """Judge one window's (or one pooled group's) evidence. Several pieces are pooled first.

        Evidence of another profile than the detector's is rejected (counted, not judged); a
        histogram the evidence lacks counts as empty.
        """
        ev = evidence if isinstance(evidence, WindowEvidence) else pool(evidence)
        if self.profile_id is not None and ev.profile_id != self.profile_id:
            self.stats["updates"] += 1
            self.stats["rejected"] += 1
            return self._decision(False, False, [], f"evidence of profile {ev.profile_id!r}, "
                                  f"not {self.profile_id!r}: not judged")
        counts: list[Sequence[int] | None] = []
        others: list[int] = []
        for h in self.hists:
            entry = ev.histograms.get(h.name)
            counts.append(entry[0] if entry is not None else None)
            others.append(entry[1] if entry is not None else 0)
        return self.update_counts(counts, others)

    def update_counts(self, counts: Sequence[Sequence[int] | None],
                      other: Sequence[int] | None = None) -> Decision:
        """Judge counts per reference bin, one sequence per histogram in :attr:`names` order
        (``None`` for a histogram without counts); ``other``: NaN/unknown counts per histogram.

        Raises ``ValueError`` for counts of the wrong shape or negative counts (nothing is
        counted then).
        """
        if len(counts) != len(self.hists):
            raise ValueError(f"{len(counts)} histograms given, the detector has {len(self.hists)}")
        others = list(other) if other is not None else [0] * len(self.hists)
        if len(others) != len(self.hists):
            raise ValueError("one 'other' count per histogram")
        arrays: list[npt.NDArray[np.int64] | None] = []
        for h, c, o in zip(self.hists, counts, others, strict=True):
            if c is None:
                arrays.append(None)
                continue
            arr = np.asarray(c, dtype=np.int64).reshape(-1)
            if arr.size != h.proportions.size or (arr < 0).any() or int(o) < 0:
                raise ValueError(f"histogram {h.name!r}: expected {h.proportions.size} "
                                 f"non-negative counts, got {arr.size}")
            arrays.append(arr)
        self.stats["updates"] += 1
        for h, maybe, o in zip(self.hists, arrays, others, strict=True):
            if maybe is not None:
                h.pending += maybe
            h.pending_other += int(o)
            h.other_total += int(o)
            self.stats["nan_values"] += int(o)

        judged: list[_Judged] = []
        for i in self._testable:
            h = self.hists[i]
            n = int(h.pending.sum())
            if n < h.min_rows:
                continue
            judged.append(self._judge(i, n))
        if not judged:
            return self._decision(False, False, [], self._pending_detail())

        log_e = np.zeros(self.cusum.components)
        rows_k = np.ones(self.cusum.components, dtype=np.int64)
        mask = np.zeros(self.cusum.components, dtype=bool)
        t = self._thetas.size
        for j in judged:
            slot = self._testable.index(self._index[j.name])
            log_e[slot * t:(slot + 1) * t] = j.log_e
            rows_k[slot * t:(slot + 1) * t] = j.n
            mask[slot * t:(slot + 1) * t] = True
        rows = max(j.n for j in judged)
        self.cusum.add(log_e, rows_k, mask)  # each histogram's components weigh its own rows
        self.stats["judged"] += 1
        self.stats["rows_judged"] += rows
        window_log_e = log_mean_exp(log_e[mask]) if mask.any() else -math.inf
        for j in judged:
            self._last[j.name] = {"g": round(j.g, 4), "dof": j.dof, "n": j.n,
                                  "psi": round(j.psi, 6), "nan_values": j.other}
        alarm = self.cusum.crossed()
        decision = self._decision(True, alarm, judged, "", window_log_e)
        for j in judged:  # judged counts leave the pending buffer
            h = self.hists[self._index[j.name]]
            h.pending[:] = 0
            h.pending_other = 0
        return decision

    def _judge(self, i: int, n: int) -> _Judged:
        h = self.hists[i]
        o = np.bincount(h.groups, weights=h.pending, minlength=h.q_props.size)
        expected = n * h.q_props
        nz = o > 0
        g = float(2.0 * np.sum(o[nz] * np.log(o[nz] / expected[nz])))
        g = max(g, 0.0)
        allowance = n * self._q[i] / self.reference_n
        th = self._thetas
        log_e = th * g + 0.5 * h.dof * np.log1p(-2 * th) - th * allowance / (1 - 2 * th)
        value = psi(h.proportions, h.pending) if n > 0 else 0.0
        return _Judged(h.name, n, g, h.dof, value, h.pending_other, allowance, log_e)

    # -- decisions ----------------------------------------------------------------------------

    def _pending_detail(self) -> str:
        waiting = [h for h in self.hists if h.testable and h.pending.sum() > 0]
        if not self._testable:
            return "no histogram can be judged (no reference profile, or constant features)"
        if not waiting:
            return "no rows to judge"
        h = max(waiting, key=lambda x: int(x.pending.sum()))
        return (f"too few rows to judge yet: {int(h.pending.sum())} of {h.min_rows} pending "
                f"({h.name}); pooled with the next windows")

    def _decision(self, judged_any: bool, alarm: bool, judged: list[_Judged], detail: str,
                  window_log_e: float = -math.inf) -> Decision:
        score = self.cusum.score
        threshold = self.threshold
        explanation: dict[str, Any] = {
            "test": "e-CUSUM of likelihood-ratio chi-square (G) e-values per histogram",
            "false_alarm_rate": f"at most {self.settings.alpha:g} per row",
            "alpha": self.settings.alpha, "reference_alpha": self.settings.reference_alpha,
            "reference_n": self.reference_n, "profile_id": self.profile_id,
            "components": self.cusum.components,
        }
        if judged:
            explanation["window_log_e"] = window_log_e if math.isfinite(window_log_e) else None
            explanation["histograms"] = [
                {"name": j.name, "n": j.n, "g": round(j.g, 4), "dof": j.dof,
                 "p_value": float(chi2.sf(j.g, j.dof)), "psi": round(j.psi, 6),
                 "noise_floor_psi": j.dof * (1 / j.n + 1 / self.reference_n),
                 "reference_allowance": round(j.allowance, 4),
                 "log_e": round(float(j.log_e.max()), 4), "nan_values": j.other}
                for j in sorted(judged, key=lambda j: -float(j.log_e.max()))]
        lead = self._leader()
        if lead is not None:
            explanation["leader"] = lead
        not_judgeable = [h.name for h in self.hists if not h.testable]
        if not_judgeable:
            explanation["not_judgeable"] = not_judgeable
        pending = {h.name: int(h.pending.sum()) for h in self.hists
                   if h.testable and h.pending.sum() > 0 and h.name not in
                   {j.name for j in judged}}
        if pending:
            explanation["pending_rows"] = pending
        if alarm:
            assert lead is not None
            detail = (f"drift on {_label(lead['histogram'])}: evidence {score:.1f} >= "
                      f"{threshold:.1f} (log scale) over the last {lead['run_rows']} rows "
                      f"in {lead['run_updates']} update(s); latest G = {lead['g']:.1f} on "
                      f"{lead['dof']} dof (PSI {lead['psi']:.3f}, n = {lead['n']})")
        elif judged_any and not detail:
            detail = (f"no drift alarm: evidence {score:.1f} < {threshold:.1f}"
                      if math.isfinite(score) else "no drift evidence")
        cleared = False
        fired = alarm and not self.alarm_state.in_alarm
        if judged_any:
            record = {"score": score, "threshold": threshold, **(lead or {})} if alarm else None
            cleared = self.alarm_state.step(alarm, window_log_e, record)
            if cleared:
                detail += "; alarm cleared"
        out = Decision(self.kind, alarm, self.alarm_state.state, cleared, judged_any, score,
                       threshold, detail, explanation, fired)
        if alarm:
            self.cusum.reset()
        return out

    def _leader(self) -> dict[str, Any] | None:
        if not math.isfinite(self.cusum.score):
            return None
        k = self.cusum.leader()
        t = self._thetas.size
        i = self._testable[k // t]
        h = self.hists[i]
        return {"histogram": h.name, "theta": float(self._thetas[k % t]),
                "log_evidence": float(self.cusum.log_c[k]),
                "run_rows": int(self.cusum.run_rows[k]),
                "run_updates": int(self.cusum.run_updates[k]),
                **self._last.get(h.name, {})}

    # -- state --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole detector as JSON (reference included): persist it per (device, version)."""
        return {
            "kind": self.kind, "settings": self.settings.to_dict(),
            "reference_n": self.reference_n, "profile_id": self.profile_id,
            "histograms": [{"name": h.name, "proportions": h.proportions.tolist(),
                            "pending": h.pending.tolist(), "pending_other": h.pending_other,
                            "other_total": h.other_total} for h in self.hists],
            "cusum": self.cusum.to_dict(), "alarm": self.alarm_state.to_dict(),
            "stats": dict(self.stats), "last": self._last,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DriftDetector:
        if d.get("kind") != cls.kind:
            raise MonitoringError("not a drift detector state")
        hists = d["histograms"]
        out = cls([h["name"] for h in hists], [h["proportions"] for h in hists],
                  int(d["reference_n"]), DriftSettings.from_dict(d["settings"]),
                  profile_id=d.get("profile_id"))
        for h, s in zip(out.hists, hists, strict=True):
            h.pending[:] = [int(x) for x in s["pending"]]
            h.pending_other = int(s["pending_other"])
            h.other_total = int(s["other_total"])
        cusum = EvidenceCusum.from_dict(d["cusum"])
        if cusum.components != out.cusum.components:
            raise MonitoringError("drift detector state does not match its histograms")
        out.cusum = cusum
        out.alarm_state = AlarmState.from_dict(d["alarm"])
        out.stats.update({k: int(v) for k, v in d.get("stats", {}).items()})
        out._last.update(d.get("last", {}))
        return out


def _label(name: str) -> str:
    return "the prediction distribution" if name == PREDICTION else f"feature {name!r}"
