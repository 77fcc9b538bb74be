"""What the sequential detectors read from a window: its additive counts, and how they pool.

:class:`WindowEvidence` is the part of one window summary (or of several, added) that the
detectors of :mod:`controller.monitoring.drift_test` and :mod:`edgewise_monitoring.accuracy_test`
judge: the counts per reference bin of every feature and of the prediction, the number of
labelled predictions and of wrong ones (classification), the sums of errors (regression). Every
field is a count or a sum, so evidence **pools by addition**: the windows a device sent since
the last evaluation, or the windows of every device of a group on one model version (fleet
pooling, :func:`pool`). Pooled evidence is judged exactly like one large window.

:meth:`WindowEvidence.from_summary` never trusts its input: a summary it cannot read raises
:class:`~edgewise_monitoring.errors.MonitoringError` with the reason, which the caller counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgewise_monitoring.accuracy import ClassificationScore
from edgewise_monitoring.errors import IncompatibleAggregates, MonitoringError

#: The name of the prediction histogram among the feature histograms.
PREDICTION = "__prediction__"


@dataclass
class WindowEvidence:
    """Additive counts of one or more windows of one model version (see the module docstring).

    ``histograms`` maps a histogram name (a feature name, or :data:`PREDICTION`) to its counts
    per reference bin and its ``other`` count (NaN or unknown category). ``labels``/``errors``:
    labelled predictions and wrong ones (classification). ``reg_n``, ``sum_abs_err``,
    ``sum_sq_err``, ``sum_err``: labelled regression errors. ``windows`` and ``sources``
    (device ids, when known) say what was pooled.
    """

    profile_id: str | None
    task: str
    rows: int = 0
    histograms: dict[str, tuple[list[int], int]] = field(default_factory=dict)
    labels: int = 0
    errors: int = 0
    reg_n: int = 0
    sum_abs_err: float = 0.0
    sum_sq_err: float = 0.0
    sum_err: float = 0.0
    windows: int = 1
    sources: tuple[str, ...] = ()

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], source: str | None = None) -> WindowEvidence:
        """The evidence in one window summary (:mod:`edgewise_monitoring.summary` format)."""
        try:
            task = str(summary["task"])
            if task not in ("classification", "regression"):
                raise MonitoringError(f"unknown task {task!r}")
            hist: dict[str, tuple[list[int], int]] = {}
            for f in summary.get("features") or []:
                hist[str(f["name"])] = _counts(f)
            pred = summary.get("prediction")
            if pred is not None:
                hist[PREDICTION] = _counts(pred)
            out = cls(profile_id=summary.get("profile_id"), task=task,
                      rows=_nonneg_int(summary.get("count", 0)), histograms=hist,
                      sources=(source,) if source is not None else ())
            score = summary.get("score") or {}
            if task == "classification":
                cls_score = ClassificationScore.from_dict(score)
                out.labels = cls_score.count
                out.errors = cls_score.count - cls_score.correct
            else:
                out.reg_n = _nonneg_int(score.get("n", 0))
                out.sum_abs_err = _finite(score.get("sum_abs_err", 0.0))
                out.sum_sq_err = _finite(score.get("sum_sq_err", 0.0))
                out.sum_err = _finite(score.get("sum_err", 0.0))
            return out
        except MonitoringError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MonitoringError(f"unreadable window summary: {exc!r}") from exc

    def add(self, other: WindowEvidence) -> None:
        """Add ``other`` into this evidence (in place). Same profile, task and histograms."""
        if other.profile_id != self.profile_id or other.task != self.task:
            raise IncompatibleAggregates("evidence of different profiles or tasks")
        if set(other.histograms) != set(self.histograms):
            raise IncompatibleAggregates("evidence with different histograms")
        for name, (counts, extra) in other.histograms.items():
            mine, mine_other = self.histograms[name]
            if len(mine) != len(counts):
                raise IncompatibleAggregates(f"histogram {name!r} has different bins")
            self.histograms[name] = ([a + b for a, b in zip(mine, counts, strict=True)],
                                     mine_other + extra)
        self.rows += other.rows
        self.labels += other.labels
        self.errors += other.errors
        self.reg_n += other.reg_n
        self.sum_abs_err += other.sum_abs_err
        self.sum_sq_err += other.sum_sq_err
        self.sum_err += other.sum_err
        self.windows += other.windows
        self.sources = tuple(dict.fromkeys(self.sources + other.sources))

    def copy(self) -> WindowEvidence:
        return WindowEvidence.from_dict(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {"profile_id": self.profile_id, "task": self.task, "rows": self.rows,
                "histograms": {k: [list(c), o] for k, (c, o) in self.histograms.items()},
                "labels": self.labels, "errors": self.errors, "reg_n": self.reg_n,
                "sum_abs_err": self.sum_abs_err, "sum_sq_err": self.sum_sq_err,
                "sum_err": self.sum_err, "windows": self.windows, "sources": list(self.sources)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WindowEvidence:
        return cls(profile_id=d.get("profile_id"), task=str(d["task"]), rows=int(d["rows"]),
                   histograms={str(k): ([int(x) for x in v[0]], int(v[1]))
                               for k, v in d["histograms"].items()},
                   labels=int(d["labels"]), errors=int(d["errors"]), reg_n=int(d["reg_n"]),
                   sum_abs_err=float(d["sum_abs_err"]), sum_sq_err=float(d["sum_sq_err"]),
                   sum_err=float(d["sum_err"]), windows=int(d["windows"]),
                   sources=tuple(str(s) for s in d.get("sources", ())))


def pool(evidence: Iterable[WindowEvidence]) -> WindowEvidence:
    """The sum of several windows' evidence (windows of one device, or of a fleet group).

    Raises :class:`IncompatibleAggregates` for evidence of different profiles; callers pooling
    a group should pool per profile (:func:`pool_by_profile`).
    """
    items = list(evidence)
    if not items:
        raise ValueError("nothing to pool")
    out = items[0].copy()
    for e in items[1:]:
        out.add(e)
    return out


def pool_by_profile(evidence: Iterable[WindowEvidence]) -> dict[str | None, WindowEvidence]:
    """Pool evidence per profile id (one entry per profile met), never raising on a mix."""
    out: dict[str | None, WindowEvidence] = {}
    for e in evidence:
        if e.profile_id in out:
            try:
                out[e.profile_id].add(e)
            except IncompatibleAggregates:
                continue
        else:
            out[e.profile_id] = e.copy()
    return out


def _counts(entry: Mapping[str, Any]) -> tuple[list[int], int]:
    counts = [_nonneg_int(c) for c in entry["counts"]]
    return counts, _nonneg_int(entry.get("other", 0))


def _nonneg_int(x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0 \
            or int(x) != x:
        raise MonitoringError(f"a count must be a non-negative integer, not {x!r}")
    return int(x)


def _finite(x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise MonitoringError(f"a sum must be a finite number, not {x!r}")
    return float(x)
