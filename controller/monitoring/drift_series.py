"""Which feature drifted: per-feature drift of a model version over time, across the fleet. Pure.

The agents send additive window summaries: per feature (and for the prediction) a count per
reference bin plus an ``other`` bucket. Counts of windows counted against one profile add up
exactly, so a bucket of time (or a device, or a label group) is judged by adding the counts of
its windows first and computing one PSI of the sum against the registered reference
proportions. Averaging the windows' PSIs instead would be wrong twice: PSI is not linear in
the counts, and a small window's PSI is mostly noise (docs/monitoring.md, "The noise floor").

A figure is ``None`` while the summed histogram holds fewer than ``min_rows_per_bin`` rows per
reference bin: the PSI of a thin histogram is empty-bin penalty, not drift, and reporting it as
0 would claim "no drift" where nothing was measured.

The I/O around this (the queries, the cache, the API) is ``controller/monitoring/drift_views.py``;
marker placement is :mod:`controller.monitoring.drift_markers`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controller.timebuckets import BucketPlan
from edgewise_monitoring import ReferenceProfile, drift_verdict

PREDICTION = "(prediction)"  # the prediction histogram's name among the features (as alerts say)
FEATURE, PREDICTED = "feature", "prediction"  # the kinds of histogram

# skip reasons, counted per view
OTHER_PROFILE = "other_profile"  # counted against bins other than the registered profile's
MALFORMED = "malformed"  # not a summary of this profile's shape


@dataclass(frozen=True)
class Histogram:
    """One histogram of the reference: a feature's bins or the prediction's classes/bins."""

    name: str
    kind: str
    proportions: tuple[float, ...]

    @property
    def bins(self) -> int:
        return len(self.proportions)


@dataclass(frozen=True)
class Reference:
    """What drift is measured against: the registered profile's histograms, in summary order
    (the features, then the prediction), its fingerprint and sample size."""

    profile_id: str
    n: int
    histograms: tuple[Histogram, ...]

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any] | None) -> Reference | None:
        """None for a version registered without a profile; ProfileError for a broken one."""
        parsed = ReferenceProfile.from_dict(dict(profile) if profile else None)
        if parsed.is_empty or parsed.profile_id is None:
            return None
        histograms = [Histogram(f.name, FEATURE, f.proportions) for f in parsed.features]
        if parsed.prediction is not None:
            histograms.append(Histogram(PREDICTION, PREDICTED, parsed.prediction.proportions))
        return cls(parsed.profile_id, parsed.n, tuple(histograms))

    @property
    def offsets(self) -> list[int]:
        """Where each histogram starts in a flat count vector (each has its bins + other)."""
        out, at = [], 0
        for h in self.histograms:
            out.append(at)
            at += h.bins + 1
        return out

    @property
    def width(self) -> int:
        return sum(h.bins + 1 for h in self.histograms)


@dataclass(frozen=True)
class Settings:
    """The drift settings a verdict uses (a summary's ``params``)."""

    psi_eps: float = 1e-4
    drift_base: float = 0.1
    drift_factor: float = 2.5
    min_rows_per_bin: int = 10

    @classmethod
    def from_params(cls, params: Any) -> Settings:
        if not isinstance(params, Mapping):
            raise ValueError("params must be an object")
        values = {k: params[k] for k in ("psi_eps", "drift_base", "drift_factor",
                                         "min_rows_per_bin")}
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   for v in values.values()) or values["psi_eps"] <= 0:
            raise ValueError("params must be finite numbers")
        return cls(float(values["psi_eps"]), float(values["drift_base"]),
                   float(values["drift_factor"]), int(values["min_rows_per_bin"]))

    def to_dict(self) -> dict[str, Any]:
        return {"psi_eps": self.psi_eps, "drift_base": self.drift_base,
                "drift_factor": self.drift_factor, "min_rows_per_bin": self.min_rows_per_bin}


@dataclass(frozen=True)
class WindowCounts:
    """The part of one metrics window that drift needs: its histograms' counts, flat."""

    device_id: str
    end: float
    rows: int  # rows predicted in the window
    settings: Settings
    counts: np.ndarray  # int64, Reference.width long: each histogram's bins, then its other


class Skipped(ValueError):
    """A window left out of a view, with the reason it is counted under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


def window_counts(reference: Reference, device_id: str, end: float,
                  summary: Mapping[str, Any]) -> WindowCounts:
    """The window's counts against ``reference``; :class:`Skipped` when they cannot be added
    to the registered profile's (another profile id, another shape, broken numbers)."""
    if summary.get("profile_id") != reference.profile_id:
        raise Skipped(OTHER_PROFILE)
    try:
        entries = list(summary["features"])
        if reference.histograms and reference.histograms[-1].kind == PREDICTED:
            # a classifier's window counts its classes even against a profile without a
            # prediction histogram; only a reference makes those counts a drift figure
            entries.append(summary["prediction"])
        if len(entries) != len(reference.histograms):
            raise Skipped(MALFORMED, "another number of histograms")
        flat: list[int] = []
        for entry, h in zip(entries, reference.histograms, strict=True):
            counts = entry["counts"]
            if len(counts) != h.bins:
                raise Skipped(MALFORMED, f"{h.name}: {len(counts)} bins, not {h.bins}")
            flat.extend(counts)
            flat.append(entry["other"])
        array = np.asarray(flat, dtype=np.int64)
        if (array < 0).any():
            raise Skipped(MALFORMED, "negative counts")
        return WindowCounts(device_id, float(end), int(summary["count"]),
                            Settings.from_params(summary["params"]), array)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, Skipped):
            raise
        raise Skipped(MALFORMED, str(exc)) from None


@dataclass
class Tally:
    """Counts of several windows added up, with how many windows, devices and rows, and the
    settings of the newest of them."""

    counts: np.ndarray
    windows: int = 0
    rows: int = 0
    devices: set[str] = field(default_factory=set)
    last_end: float | None = None
    settings: Settings | None = None

    @classmethod
    def empty(cls, reference: Reference) -> Tally:
        return cls(np.zeros(reference.width, dtype=np.int64))

    def add(self, w: WindowCounts) -> None:
        self.counts += w.counts
        self.windows += 1
        self.rows += w.rows
        self.devices.add(w.device_id)
        if self.last_end is None or w.end >= self.last_end:
            self.last_end, self.settings = w.end, w.settings

    def merge(self, other: Tally) -> None:
        self.counts += other.counts
        self.windows += other.windows
        self.rows += other.rows
        self.devices |= other.devices
        if other.last_end is not None and (self.last_end is None
                                           or other.last_end >= self.last_end):
            self.last_end, self.settings = other.last_end, other.settings


def verdicts(reference: Reference, tally: Tally, settings: Settings) -> list[dict[str, Any]]:
    """One drift figure per histogram of the summed counts: ``{name, kind, psi, threshold, n,
    drifted, reliable}``; ``psi``/``threshold``/``drifted`` are None below the row minimum."""
    out = []
    for h, at in zip(reference.histograms, reference.offsets, strict=True):
        counts = tally.counts[at:at + h.bins + 1]
        n = int(counts.sum())
        verdict = drift_verdict(h.proportions, counts, reference.n, eps=settings.psi_eps,
                                base=settings.drift_base, factor=settings.drift_factor,
                                min_rows_per_bin=settings.min_rows_per_bin) if n else None
        out.append({"name": h.name, "kind": h.kind, "n": n,
                    "psi": None if verdict is None else verdict.psi,
                    "threshold": None if verdict is None else verdict.threshold,
                    "drifted": None if verdict is None else verdict.drifted,
                    "reliable": verdict is not None})
    return out


def newest_settings(windows: Sequence[WindowCounts]) -> Settings | None:
    """The settings of the newest window: one setting judges a whole view, so that its
    buckets are comparable (they differ only if agents were reconfigured in the range)."""
    return max(windows, key=lambda w: w.end).settings if windows else None


def severity(figure: Mapping[str, Any]) -> float:
    """How far over its threshold a figure is (PSI / threshold); -1 without a figure."""
    psi, threshold = figure.get("psi"), figure.get("threshold")
    return -1.0 if psi is None or not threshold else float(psi) / float(threshold)


# -- per feature over time -------------------------------------------------------------------

def bucket_tallies(reference: Reference, windows: Iterable[WindowCounts],
                   plan: BucketPlan) -> list[Tally]:
    """The windows added up per time bucket, each in the bucket its end falls in (windows
    ending outside the plan are left out)."""
    tallies = [Tally.empty(reference) for _ in range(plan.count)]
    for w in windows:
        index = plan.index(w.end)
        if index is not None:
            tallies[index].add(w)
    return tallies


def feature_series(reference: Reference, windows: Iterable[WindowCounts],
                   plan: BucketPlan) -> dict[str, Any]:
    """:func:`series` of the windows, added up per time bucket."""
    return series(reference, plan, bucket_tallies(reference, windows, plan))


def series(reference: Reference, plan: BucketPlan, tallies: Sequence[Tally]) -> dict[str, Any]:
    """Per histogram, one drift figure per time bucket (``tallies``, one per bucket of
    ``plan``, summed across devices); with each histogram's latest and peak figure and the
    whole range added up. One setting, the newest window's, judges every bucket.

    Histograms come most drifted first (the furthest any bucket is over its threshold), then
    in profile order; ``peak`` is the bucket of the highest PSI.
    """
    overall = Tally.empty(reference)
    for t in tallies:
        overall.merge(t)
    settings = overall.settings or Settings()
    per_bucket = [verdicts(reference, t, settings) for t in tallies]
    whole = verdicts(reference, overall, settings)
    features: list[dict[str, Any]] = []
    for j, h in enumerate(reference.histograms):
        points = [{"ts": plan.bucket_start(i), **{k: v for k, v in per_bucket[i][j].items()
                                                  if k not in ("name", "kind")}}
                  for i in range(plan.count)]
        measured = [p for p in points if p["reliable"]]
        features.append({
            "name": h.name, "kind": h.kind, "bins": h.bins,
            "min_rows": settings.min_rows_per_bin * h.bins,
            "points": points,
            "latest": measured[-1] if measured else None,
            "peak": max(measured, key=lambda p: p["psi"]) if measured else None,
            "severity": max((severity(p) for p in measured), default=-1.0),
            "overall": {k: v for k, v in whole[j].items() if k not in ("name", "kind")},
        })
    # the furthest over its threshold first: a bucket's threshold grows as its rows shrink,
    # so the highest PSI alone would rank a thin bucket's noise above a real shift
    order = sorted(range(len(features)), key=lambda j: (-features[j].pop("severity"), j))
    return {
        "settings": settings.to_dict(),
        "windows": overall.windows,
        "devices": len(overall.devices),
        "rows": overall.rows,
        "buckets": [{"ts": plan.bucket_start(i), "windows": t.windows,
                     "devices": len(t.devices), "rows": t.rows}
                    for i, t in enumerate(tallies)],
        "features": [features[j] for j in order],
    }


# -- per device or label group over the range -------------------------------------------------

def drift_by(reference: Reference, windows: Iterable[WindowCounts],
             key_of: Callable[[str], str]) -> list[dict[str, Any]]:
    """Per key (``key_of(device_id)``: the device itself, or its label group), every histogram's
    drift over all of the key's windows summed; the most drifted keys first."""
    kept = list(windows)
    settings = newest_settings(kept) or Settings()
    tallies: dict[str, Tally] = {}
    for w in kept:
        key = key_of(w.device_id)
        tally = tallies.get(key)
        if tally is None:
            tally = tallies[key] = Tally.empty(reference)
        tally.add(w)
    rows: list[dict[str, Any]] = []
    for key, tally in tallies.items():
        figures = verdicts(reference, tally, settings)
        measured = [f for f in figures if f["reliable"]]
        worst = max(measured, key=severity) if measured else None
        rows.append({
            "key": key, "devices": len(tally.devices), "windows": tally.windows,
            "rows": tally.rows, "last_window_end": tally.last_end,
            "worst": None if worst is None else {k: worst[k] for k in ("name", "psi",
                                                                        "threshold")},
            "drifted": [f["name"] for f in figures if f["drifted"]],
            "features": figures,
        })
    rows.sort(key=lambda r: (-severity(r["worst"] or {}), r["key"]))
    return rows


def collect(reference: Reference, rows: Iterable[tuple[str, float, Mapping[str, Any]]]
            ) -> tuple[list[WindowCounts], Counter[str]]:
    """The usable windows of ``(device_id, window_end, summary)`` rows, and how many were
    skipped for which reason."""
    kept: list[WindowCounts] = []
    skipped: Counter[str] = Counter()
    for device_id, end, summary in rows:
        try:
            kept.append(window_counts(reference, device_id, end, summary))
        except Skipped as exc:
            skipped[exc.reason] += 1
    return kept, skipped
