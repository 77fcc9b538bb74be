"""The headline figures of monitoring: what a merged window summary says in a few numbers, and
one device's figures for one model version (what the rollout gates read). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VersionFigures:
    """One device's figures for one model version since a time (what rollout gates read).

    ``accuracy`` is measured on ``labelled`` feedback pairs (classification; ``None`` for a
    regressor or without labels). ``drift_psi`` is the largest PSI over the features and the
    prediction, ``None`` while no histogram holds enough rows for a verdict.
    ``predictions`` counts rows predicted (every row: aggregates are never sampled).
    """

    accuracy: float | None
    labelled: int
    p95_latency_ms: float | None
    drift_psi: float | None
    predictions: int


NO_FIGURES = VersionFigures(accuracy=None, labelled=0, p95_latency_ms=None, drift_psi=None,
                            predictions=0)



def figures(merged: Mapping[str, Any]) -> dict[str, Any]:
    """The headline figures of a (merged) summary, flat and JSON-ready."""
    d = merged["derived"]
    score = d["score"]
    drift = d["drift"]
    psis = [f["psi"] for f in drift["features"] if f["psi"] is not None]
    if drift["prediction"] is not None and drift["prediction"]["psi"] is not None:
        psis.append(drift["prediction"]["psi"])
    verdicts = [f["drifted"] for f in drift["features"] if f["drifted"] is not None]
    if drift["prediction"] is not None and drift["prediction"]["drifted"] is not None:
        verdicts.append(drift["prediction"]["drifted"])
    estimated = d["estimated_accuracy"] or {}
    loss = d.get("loss") or {}
    return {
        "predictions": int(merged["count"]),
        "errors": int(merged["errors"]),
        "error_rate": d["error_rate"],
        "labelled": int(score["n"]),
        "accuracy": score.get("accuracy"),
        "macro_f1": score.get("macro_f1"),
        "mae": score.get("mae"),
        "rmse": score.get("rmse"),
        "bias": score.get("bias"),
        # without labels: expected accuracy from calibrated probabilities (blind to concept
        # drift: a change of what the labels mean leaves the model just as confident)
        "estimated_accuracy": estimated.get("value"),
        "estimated_accuracy_ci": ([estimated["ci_low"], estimated["ci_high"]]
                                  if "ci_low" in estimated and "ci_high" in estimated else None),
        "estimate_method": estimated.get("method"),
        "log_loss": loss.get("log_loss"),
        "brier": loss.get("brier"),
        "prediction_bias": d.get("prediction_bias"),
        "latency_ms": d["latency_ms"],
        "drift_psi": max(psis) if psis else None,
        "drifted": any(verdicts) if verdicts else None,
        "drifted_features": drift["drifted_features"],
        "prediction_drift": drift["prediction"],
        "feature_drift": drift["features"],
        "concept_drift_detections": int(merged["concept_drift_detections"]),
    }

