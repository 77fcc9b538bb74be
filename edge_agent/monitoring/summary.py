"""The window summary: an additive JSON record, plus figures derived from it.

A summary has two kinds of content. The *additive* parts are counts and sums (rows, errors,
latency buckets, feature and prediction histograms, confusion pairs, error sums, confidence
sums); adding them field by field gives exactly the summary of the union of the windows. The
``"derived"`` part (quantiles, PSI and drift verdicts, accuracy, F1, MAE, RMSE, estimated
accuracy) is recomputed from the additive parts by :func:`derive`, never added. Hence
:func:`merge_summaries` lets the controller aggregate windows, devices and fleets with no raw data,
and the figures of a merged summary are those a single window seeing everything would report.

Each summary also carries what is needed to recompute its figures: the reference proportions
(``"expected"``) next to each histogram, the reference sample size and the drift settings.
The bin edges of features are not repeated (they are in the manifest's profile), but
``profile_id`` fingerprints the profile, and summaries with different ids are never added.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_agent.monitoring.accuracy import ClassificationScore, RegressionScore
from edge_agent.monitoring.confidence import ConfidenceEstimate
from edge_agent.monitoring.errors import IncompatibleAggregates
from edge_agent.monitoring.latency import LatencyHistogram
from edge_agent.monitoring.psi import DriftVerdict, drift_verdict

SUMMARY_SCHEMA = 1

# Fields that must be identical for two summaries to be added.
_IDENTITY_KEYS = ("schema", "task", "profile_id", "reference_n", "params")


def _verdict_dict(
    expected: Sequence[float] | None,
    counts: Sequence[int],
    other: int,
    reference_n: int,
    params: dict[str, Any],
) -> dict[str, Any]:
    n = int(sum(counts)) + int(other)
    verdict: DriftVerdict | None = None
    if expected is not None and reference_n > 0:
        verdict = drift_verdict(
            expected,
            [*counts, other],
            reference_n,
            eps=params["psi_eps"],
            base=params["drift_base"],
            factor=params["drift_factor"],
            min_rows_per_bin=params["min_rows_per_bin"],
        )
    if verdict is None:
        return {"psi": None, "threshold": None, "n": n, "drifted": None}
    return verdict.to_dict()


def derive(summary: dict[str, Any]) -> dict[str, Any]:
    """The convenience figures of a summary, computed from its additive parts only."""
    params = summary["params"]
    reference_n = int(summary["reference_n"])
    count, errors = int(summary["count"]), int(summary["errors"])

    latency = LatencyHistogram.from_dict(summary["latency"])
    latency_ms = {
        "mean": latency.mean,
        "p50": latency.quantile(0.5),
        "p95": latency.quantile(0.95),
        "p99": latency.quantile(0.99),
        "max": latency.max if latency.count else None,
    }

    feature_drift = []
    for f in summary["features"]:
        entry = _verdict_dict(f["expected"], f["counts"], f["other"], reference_n, params)
        feature_drift.append({"name": f["name"], **entry})
    prediction_drift = None
    pred = summary["prediction"]
    if pred is not None and pred["expected"] is not None:
        prediction_drift = _verdict_dict(
            pred["expected"], pred["counts"], pred["other"], reference_n, params
        )
    drifted = [f["name"] for f in feature_drift if f["drifted"]]
    any_drift = bool(drifted) or bool(prediction_drift and prediction_drift["drifted"])

    score: dict[str, Any]
    estimated: dict[str, Any] | None = None
    if summary["task"] == "classification":
        cls_score = ClassificationScore.from_dict(summary["score"])
        score = {
            "n": cls_score.count,
            "accuracy": cls_score.accuracy(),
            "macro_f1": cls_score.macro_f1(),
        }
        if summary["confidence"] is not None:
            conf = ConfidenceEstimate.from_dict(summary["confidence"])
            offset = float(params["calibration_offset"])
            estimated = {
                "value": conf.estimated_accuracy(offset),
                "is_estimate": True,
                "method": "average-confidence",
                "mean_confidence": conf.mean_confidence,
                "calibration_offset": offset,
                "n": conf.count,
            }
    else:
        reg = RegressionScore.from_dict(summary["score"])
        score = {"n": reg.n, "mae": reg.mae(), "rmse": reg.rmse(), "bias": reg.bias()}

    return {
        "error_rate": errors / (count + errors) if count + errors else None,
        "latency_ms": latency_ms,
        "drift": {
            "features": feature_drift,
            "prediction": prediction_drift,
            "drifted_features": drifted,
            "any_drift": any_drift,
        },
        "score": score,
        "estimated_accuracy": estimated,
        "concept_drift": int(summary["concept_drift_detections"]) > 0,
    }


def _histogram_meta(h: dict[str, Any] | None) -> Any:
    """What must match for two histogram entries to be added: all but the counts."""
    if h is None:
        return None
    return {k: v for k, v in h.items() if k not in ("counts", "other")}


def _add_counts(entries: list[dict[str, Any]]) -> dict[str, Any]:
    out = copy.deepcopy(entries[0])
    counts = np.sum([np.asarray(e["counts"], dtype=np.int64) for e in entries], axis=0)
    out["counts"] = [int(c) for c in np.atleast_1d(counts)]
    out["other"] = int(sum(int(e["other"]) for e in entries))
    return out


def merge_summaries(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Add window summaries (of one model and profile) and recompute the derived figures.

    The result has the same format as its inputs, so merging is associative: windows into a
    device-hour, device-hours into a fleet-day. ``start_ts``/``end_ts`` become the earliest
    start and latest end. Raises :class:`IncompatibleAggregates` when the summaries come from
    different tasks, profiles, features or drift settings.
    """
    if not summaries:
        raise ValueError("nothing to merge")
    first = summaries[0]
    for s in summaries[1:]:
        for key in _IDENTITY_KEYS:
            if s.get(key) != first.get(key):
                raise IncompatibleAggregates(f"summaries differ in {key!r}")
        if [_histogram_meta(f) for f in s["features"]] != [
            _histogram_meta(f) for f in first["features"]
        ]:
            raise IncompatibleAggregates("summaries differ in their features")
        if _histogram_meta(s["prediction"]) != _histogram_meta(first["prediction"]):
            raise IncompatibleAggregates("summaries differ in their prediction histogram")
        if (s["confidence"] is None) != (first["confidence"] is None):
            raise IncompatibleAggregates("only some summaries have confidences")

    out: dict[str, Any] = {key: copy.deepcopy(first[key]) for key in _IDENTITY_KEYS}
    out["start_ts"] = min(float(s["start_ts"]) for s in summaries)
    out["end_ts"] = max(float(s["end_ts"]) for s in summaries)
    out["count"] = sum(int(s["count"]) for s in summaries)
    out["errors"] = sum(int(s["errors"]) for s in summaries)

    latency = LatencyHistogram()
    for s in summaries:
        latency.merge(LatencyHistogram.from_dict(s["latency"]))
    out["latency"] = latency.to_dict()

    out["features"] = [
        _add_counts([s["features"][j] for s in summaries]) for j in range(len(first["features"]))
    ]
    out["prediction"] = (
        None if first["prediction"] is None else _add_counts([s["prediction"] for s in summaries])
    )

    if first["task"] == "classification":
        cls_score = ClassificationScore()
        for s in summaries:
            cls_score.merge(ClassificationScore.from_dict(s["score"]))
        out["score"] = cls_score.to_dict()
    else:
        reg = RegressionScore()
        for s in summaries:
            reg.merge(RegressionScore.from_dict(s["score"]))
        out["score"] = reg.to_dict()

    if first["confidence"] is None:
        out["confidence"] = None
    else:
        conf = ConfidenceEstimate()
        for s in summaries:
            conf.merge(ConfidenceEstimate.from_dict(s["confidence"]))
        out["confidence"] = conf.to_dict()

    out["concept_drift_detections"] = sum(int(s["concept_drift_detections"]) for s in summaries)
    out["derived"] = derive(out)
    return out
