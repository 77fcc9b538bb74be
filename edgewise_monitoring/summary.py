"""The window summary: an additive JSON record, plus figures derived from it.

A summary has two kinds of content. The *additive* parts are counts and sums (rows, errors,
latency buckets, feature and prediction histograms, confusion pairs, error sums, confidence
sums); adding them field by field gives exactly the summary of the union of the windows. The
``"derived"`` part (quantiles, PSI and drift verdicts, accuracy, F1, MAE, RMSE, estimated
accuracy) is recomputed from the additive parts by :func:`derive`, never added. Hence
:func:`merge_summaries` lets the controller aggregate windows, devices and fleets with no raw data,
and the figures of a merged summary are those a single window seeing everything would report.

Each summary carries what is needed to recompute its figures: the reference sample size, the
drift settings and, by default, the reference proportions (``"expected"``) next to each
histogram. Those proportions are most of a summary's size (about 200 bytes per feature), so a
window can leave them out (``embed_reference=False``); whoever merges such summaries then passes
the profile from the manifest (``merge_summaries(summaries, profile=...)``). Bin edges of
features are never repeated: ``profile_id`` fingerprints the profile, summaries with different
ids are never added, and a profile passed in must have the summaries' id.

Format (``SUMMARY_SCHEMA`` 1); undefined figures are ``null``, never NaN::

    schema, task ("classification" | "regression"), profile_id (str | null), reference_n (int),
    params: {drift_base, drift_factor, psi_eps, min_rows_per_bin, calibration_offset},
    start_ts, end_ts (float), count (rows predicted), errors (rows of failed calls),
    latency: {scheme, counts[70], count, sum, min, max}          (milliseconds)
    features: [{name, expected?[bins], counts[bins], other}]     (other = NaN values)
    prediction: {kind: "categorical", labels, expected?, counts, other}
              | {kind: "numeric", edges, expected?, counts, other} | null
    score: {pairs: [[predicted, truth, count], ...]}                       (classification)
         | {n, sum_abs_err, sum_sq_err, sum_err}                           (regression)
    confidence: {sum, count, counts[10], other} | null   (max-probabilities; classification)
    concept_drift_detections (int: ADWIN alarms on the feedback error stream)
    -- optional, additive (absent from older summaries; merged where present) --
    concept_drift_increases (int: those of the ADWIN alarms where the error rate rose)
    expected: {n, sum_c, sum_var, [tp, fp, fn, tn], level_se}   (calibrated P(right), CBPE)
    loss: {n, sum_log_loss, sum_brier}             (top-label, labelled predictions with a probability)
    error_test: {labels, alarms, null_error, details[<=3]}   (per-label error-rate test)
    feedback_unmatched (int: labels whose prediction id was unknown)
    derived: {
      error_rate, latency_ms: {mean, p50, p95, p99, max},
      drift: {features: [{name, psi, threshold, n, drifted}],
              prediction: {psi, threshold, n, drifted} | null,
              drifted_features: [name, ...], any_drift: bool},
      score: {n, accuracy, macro_f1} | {n, mae, rmse, bias},
      estimated_accuracy: {value, is_estimate: true, method: "average-confidence",
                           mean_confidence, calibration_offset, n}
                        | {value, ci_low, ci_high, confidence, n, is_estimate: true,
                           method: "calibrated-probabilities (CBPE)", [confusion, precision,
                           recall, f1], mean_confidence, average_confidence_estimate} | null,
      concept_drift: bool,
      loss: {n, log_loss, brier} | null, prediction_bias: {...} | null  (classification),
      error_test_alarms: int}

``psi``/``threshold``/``drifted`` are ``null`` while a histogram holds fewer than
``min_rows_per_bin`` rows per reference bin (see :mod:`edgewise_monitoring.psi`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgewise_monitoring.accuracy import ClassificationScore, RegressionScore
from edgewise_monitoring.confidence import ConfidenceEstimate
from edgewise_monitoring.errors import IncompatibleAggregates
from edgewise_monitoring.expected_accuracy import ExpectedAccuracy
from edgewise_monitoring.latency import LatencyHistogram
from edgewise_monitoring.psi import DriftVerdict, drift_verdict
from edgewise_monitoring.quality import ProbabilisticLoss, prediction_bias
from edgewise_monitoring.reference import ReferenceProfile

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


def _expected(
    entry: dict[str, Any] | None, fallback: tuple[float, ...] | None
) -> Sequence[float] | None:
    if entry is None:
        return None
    embedded = entry.get("expected")
    return embedded if embedded is not None else fallback


def derive(summary: dict[str, Any], profile: ReferenceProfile | None = None) -> dict[str, Any]:
    """The convenience figures of a summary, computed from its additive parts only.

    Reference proportions come from the summary's ``"expected"`` fields, or else from
    ``profile``; without either, the drift figures are ``None``.
    """
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
    for j, f in enumerate(summary["features"]):
        ref = profile.features[j].proportions if profile is not None else None
        entry = _verdict_dict(_expected(f, ref), f["counts"], f["other"], reference_n, params)
        feature_drift.append({"name": f["name"], **entry})
    prediction_drift = None
    pred = summary["prediction"]
    pred_ref = profile.prediction.proportions if profile and profile.prediction else None
    pred_expected = _expected(pred, pred_ref)
    if pred is not None and pred_expected is not None:
        prediction_drift = _verdict_dict(
            pred_expected, pred["counts"], pred["other"], reference_n, params
        )
    drifted = [f["name"] for f in feature_drift if f["drifted"]]
    any_drift = bool(drifted) or bool(prediction_drift and prediction_drift["drifted"])

    score: dict[str, Any]
    estimated: dict[str, Any] | None = None
    extra: dict[str, Any] = {"loss": None, "prediction_bias": None}
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
            expected = summary.get("expected")
            if expected is not None:
                cbpe = ExpectedAccuracy.from_dict(expected).estimate(
                    float(expected.get("level_se", 0.0)))
                if cbpe is not None:
                    estimated = {**cbpe, "mean_confidence": conf.mean_confidence,
                                 "average_confidence_estimate": estimated["value"]}
        loss = summary.get("loss")
        if loss is not None:
            pl = ProbabilisticLoss.from_dict(loss)
            extra["loss"] = {"n": pl.n, "log_loss": pl.log_loss(), "brier": pl.brier()}
        extra["prediction_bias"] = prediction_bias(cls_score)
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
        **extra,
        "error_test_alarms": int((summary.get("error_test") or {}).get("alarms", 0)),
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


def merge_summaries(
    summaries: Sequence[dict[str, Any]], profile: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Add window summaries (of one model and profile) and recompute the derived figures.

    The result has the same format as its inputs, so merging is associative: windows into a
    device-hour, device-hours into a fleet-day. ``start_ts``/``end_ts`` become the earliest
    start and latest end. ``profile`` (the manifest's reference profile) is only needed for
    summaries made with ``embed_reference=False``. Raises :class:`IncompatibleAggregates` when
    the summaries come from different tasks, profiles, features or drift settings, or when
    ``profile`` is not the one they were counted against.
    """
    if not summaries:
        raise ValueError("nothing to merge")
    first = summaries[0]
    reference = None
    if profile is not None:
        reference = ReferenceProfile.from_dict(profile)
        if reference.profile_id != first.get("profile_id"):
            raise IncompatibleAggregates("the profile given is not the summaries' profile")
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
    _merge_optional(out, summaries)
    out["derived"] = derive(out, reference)
    return out


def _merge_optional(out: dict[str, Any], summaries: Sequence[dict[str, Any]]) -> None:
    """Add the optional fields over the summaries that have them (older ones do not); each
    carries its own ``n``, so a figure derived from a partial sum stays honest about its base."""
    for key in ("concept_drift_increases", "feedback_unmatched"):
        present = [int(s[key]) for s in summaries if s.get(key) is not None]
        if present:
            out[key] = sum(present)
    expected = [s["expected"] for s in summaries if s.get("expected") is not None]
    if expected:
        acc = ExpectedAccuracy.from_dict(expected[0])
        for e in expected[1:]:
            acc.merge(ExpectedAccuracy.from_dict(e))
        out["expected"] = {**acc.to_dict(), "level_se": float(expected[0].get("level_se", 0.0))}
    losses = [s["loss"] for s in summaries if s.get("loss") is not None]
    if losses:
        loss = ProbabilisticLoss.from_dict(losses[0])
        for entry in losses[1:]:
            loss.merge(ProbabilisticLoss.from_dict(entry))
        out["loss"] = loss.to_dict()
    tests = [s["error_test"] for s in summaries if s.get("error_test") is not None]
    if tests:
        details: list[str] = []
        for t in tests:
            details.extend(str(d) for d in t.get("details", []))
        out["error_test"] = {"labels": sum(int(t["labels"]) for t in tests),
                             "alarms": sum(int(t["alarms"]) for t in tests),
                             "null_error": tests[-1].get("null_error"),
                             "details": details[:3]}
