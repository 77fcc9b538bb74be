"""The monitoring window the agent keeps for its active model.

One :class:`MonitoringWindow` accumulates everything the device learns about the model between
two reports: how many predictions and failures, how long they took, how the inputs and outputs
are distributed against the reference profile, how confident the model was, and how it scored
on whatever feedback arrived. :meth:`MonitoringWindow.summary` turns that into an additive JSON
record (:mod:`edgewise_monitoring.summary`); :meth:`MonitoringWindow.reset` starts the next
window.

No I/O and no clock: timestamps are passed in, so the agent decides when windows start and end,
and tests run instantly.

**Cost.** :meth:`MonitoringWindow.observe` is vectorised over the batch: all feature histograms
update in one pass (:class:`~edgewise_monitoring.histogram.FeatureCounts`), and each other
accumulator in one or two numpy calls, so the per-call cost does not grow with the number of
features and the per-row cost of a large batch is a small fraction of a microsecond per
feature (``bench/bench_drift.py`` measures it).

**Concept drift.** For a classifier, each feedback pair feeds a 0/1 error into an
:class:`~edgewise_monitoring.adwin.Adwin` detector. The detector watches the model's whole
error stream, so :meth:`reset` keeps it; each window reports how many changes it detected.
When the profile carries the reference accuracy (its ``quality`` block), each label also feeds
an :class:`~edgewise_monitoring.accuracy_test.ErrorRateDetector` label by label (at most
``alpha`` false alarms per label), so an abrupt concept change is flagged within a few dozen
labels instead of at the next window judged by the controller; the window reports its alarms.

**Optional additions** (summaries without them, from older agents, still merge): with a
calibration map in the profile, every prediction's calibrated probability of being right
(``expected``: the label-free CBPE estimate, :mod:`edgewise_monitoring.calibration`); with the
probability of a labelled prediction passed to :meth:`observe_feedback`, its log loss and Brier
score (``loss``, :mod:`edgewise_monitoring.quality`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edgewise_monitoring.accuracy import ClassificationScore, RegressionScore
from edgewise_monitoring.accuracy_test import ErrorRateDetector, ErrorRateSettings
from edgewise_monitoring.adwin import Adwin
from edgewise_monitoring.confidence import ConfidenceEstimate
from edgewise_monitoring.errors import ProfileError
from edgewise_monitoring.expected_accuracy import ExpectedAccuracy
from edgewise_monitoring.histogram import BinnedCounts, FeatureCounts
from edgewise_monitoring.labels import as_flat_list, canonical_label
from edgewise_monitoring.latency import LatencyHistogram
from edgewise_monitoring.psi import (
    DEFAULT_BASE,
    DEFAULT_EPS,
    DEFAULT_FACTOR,
    MIN_ROWS_PER_BIN,
)
from edgewise_monitoring.quality import ProbabilisticLoss
from edgewise_monitoring.reference import ReferenceProfile
from edgewise_monitoring.summary import SUMMARY_SCHEMA, derive, merge_summaries

__all__ = ["MonitoringWindow", "merge_summaries"]

TASKS = ("classification", "regression")


class MonitoringWindow:
    """Per-window aggregate of one model's predictions, inputs, latencies and feedback.

    ``profile`` is the manifest's ``reference_profile`` (a dict, possibly empty, which disables
    the drift statistics). ``class_labels`` (classification) gives the prediction histogram its
    bins when the profile has none. ``calibration_offset`` is ``accuracy - mean confidence`` on
    the converter's labelled sample (see :mod:`edgewise_monitoring.confidence`).
    ``embed_reference=False`` leaves the reference proportions out of summaries (about 200
    bytes per feature); merging them then needs the profile (:func:`merge_summaries`).
    ``error_test``: settings of the per-label error-rate test (run when the profile's
    ``quality`` block has the reference accuracy); ``None`` for the defaults, ``False`` to
    turn it off.
    """

    def __init__(
        self,
        profile: dict[str, Any] | None,
        task: str,
        class_labels: Sequence[Any] | None = None,
        *,
        start_ts: float = 0.0,
        calibration_offset: float = 0.0,
        adwin_delta: float = 0.002,
        drift_base: float = DEFAULT_BASE,
        drift_factor: float = DEFAULT_FACTOR,
        psi_eps: float = DEFAULT_EPS,
        min_rows_per_bin: int = MIN_ROWS_PER_BIN,
        embed_reference: bool = True,
        error_test: ErrorRateSettings | bool | None = None,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, not {task!r}")
        self.task = task
        self.embed_reference = embed_reference
        self.reference = ReferenceProfile.from_dict(profile)
        self.params: dict[str, Any] = {
            "drift_base": float(drift_base),
            "drift_factor": float(drift_factor),
            "psi_eps": float(psi_eps),
            "min_rows_per_bin": int(min_rows_per_bin),
            "calibration_offset": float(calibration_offset),
        }
        pred_ref = self.reference.prediction
        if pred_ref is not None:
            wanted = "categorical" if task == "classification" else "numeric"
            if pred_ref.kind != wanted:
                raise ProfileError(f"a {task} model needs a {wanted} prediction profile")
        self._class_labels = (
            tuple(canonical_label(x) for x in class_labels) if class_labels is not None else None
        )
        self._adwin = Adwin(adwin_delta) if task == "classification" else None
        calibration = self.reference.calibration
        if calibration is not None and task != "classification":
            calibration = None
        self._calibration = calibration
        self._error_test: ErrorRateDetector | None = None
        quality = self.reference.quality or {}
        if task == "classification" and error_test is not False and "accuracy" in quality:
            settings = error_test if isinstance(error_test, ErrorRateSettings) else None
            self._error_test = ErrorRateDetector.from_accuracy(
                quality["accuracy"], int(quality["n"]), settings)
        self.reset(start_ts)

    # -- window life cycle ---------------------------------------------------------------------

    def reset(self, start_ts: float) -> None:
        """Start a new window at ``start_ts``: every count back to zero (ADWIN is kept)."""
        self.start_ts = float(start_ts)
        self.count = 0
        self.errors = 0
        self.concept_drift_detections = 0
        self.latency = LatencyHistogram()
        ref = self.reference
        self.features: FeatureCounts | None = (
            FeatureCounts([f.edges for f in ref.features]) if ref.features else None
        )
        self.prediction: BinnedCounts | None = None
        if ref.prediction is not None:
            if ref.prediction.kind == "categorical":
                self.prediction = BinnedCounts.categorical(ref.prediction.labels or ())
            else:
                self.prediction = BinnedCounts.numeric(ref.prediction.edges or ())
        elif self.task == "classification" and self._class_labels is not None:
            self.prediction = BinnedCounts.categorical(self._class_labels)
        self.score: ClassificationScore | RegressionScore = (
            ClassificationScore() if self.task == "classification" else RegressionScore()
        )
        self.confidence: ConfidenceEstimate | None = (
            ConfidenceEstimate() if self.task == "classification" else None
        )
        self.expected: ExpectedAccuracy | None = (
            ExpectedAccuracy(binary=self._calibration.target == "positive_class")
            if self._calibration is not None else None
        )
        self.loss: ProbabilisticLoss | None = (
            ProbabilisticLoss() if self.task == "classification" else None
        )
        self.error_test_labels = 0
        self.error_test_alarms = 0
        self.error_test_details: list[str] = []
        self.concept_drift_increases = 0
        self.feedback_unmatched = 0

    # -- accumulation --------------------------------------------------------------------------

    def observe(
        self,
        features: npt.ArrayLike | None,
        predictions: npt.ArrayLike | None,
        max_probs: npt.ArrayLike | None = None,
        latency_ms: float | npt.ArrayLike | None = None,
        error: bool = False,
    ) -> None:
        """Account for one inference call on a batch.

        ``features``: (rows x n_features), or one row as a 1-D array; ``None`` skips feature
        drift. ``predictions``: one label or value per row (``None`` allowed for a failed call).
        ``max_probs``: the predicted class's probability per row, or the (rows x classes)
        probability matrix. ``latency_ms``: one number for the whole call (one latency
        observation), or one per row. ``error=True`` records a failed call: its rows count as
        ``errors`` and nothing else is recorded, so every other figure describes successful
        predictions.

        Everything is checked before anything is counted: a ``ValueError`` leaves the window
        as it was.
        """
        x = None if features is None else np.asarray(features)
        pred = None if predictions is None else np.asarray(predictions)
        if pred is not None and (pred.ndim == 0 or (pred.ndim == 2 and pred.shape[1] == 1)):
            pred = pred.reshape(-1)
        if x is not None:
            rows = 1 if x.ndim == 1 else int(x.shape[0])
        elif pred is not None:
            rows = int(pred.shape[0])
        else:
            raise ValueError("observe() needs features or predictions")
        if error:
            self.errors += rows
            return
        if pred is None or pred.ndim != 1 or pred.shape[0] != rows:
            shape = None if pred is None else pred.shape
            raise ValueError(f"{rows} rows of features but predictions of shape {shape}")
        if self.prediction is not None and self.prediction.kind == "numeric":
            pred = pred.astype(np.float64)
        probs = None
        if max_probs is not None and self.confidence is not None:
            probs = np.asarray(max_probs, dtype=np.float64)
            if probs.ndim == 2:
                probs = probs.max(axis=1)
            if probs.size != rows:
                raise ValueError(f"{rows} predictions but {probs.size} confidences")
        lat = None if latency_ms is None else _checked_latency(latency_ms, rows)
        calibrated = None
        if probs is not None and self.expected is not None and self._calibration is not None:
            calibrated = self._calibration.correct_probability(pred, probs)
        if self.features is not None and x is not None:
            self.features.add(x)  # checks the shape before counting
        if self.prediction is not None:
            self.prediction.add(pred)
        if probs is not None and self.confidence is not None:
            self.confidence.add(probs)
        if calibrated is not None and self.expected is not None:
            self.expected.add(*calibrated)
        if isinstance(lat, float):
            self.latency.record(lat)
        elif lat is not None:
            self.latency.record_many(lat)
        self.count += rows

    def observe_feedback(self, predicted: Any, truth: Any, confidence: Any = None) -> bool:
        """Score (prediction, truth) pairs that arrived as feedback; scalars or sequences.

        Feedback counts in the window in which it arrives, whichever window made the prediction.
        ``confidence`` (optional, classification): the probability the model gave its
        prediction, one per pair, for the log loss and Brier score. Returns ``True`` when a
        change of the error rate was detected (ADWIN, or the error-rate test against the
        reference; classification only).
        """
        conf = None
        if confidence is not None and self.loss is not None:
            conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
            if conf.size != len(as_flat_list(predicted)):
                raise ValueError(f"{conf.size} confidences for {len(as_flat_list(predicted))} "
                                 "predictions")
        if self.task != "classification":
            self.score.update(predicted, truth)
            return False
        pairs = list(zip(as_flat_list(predicted), as_flat_list(truth), strict=False))
        # canonicalised before anything is counted: a bad label leaves the window as it was
        wrong = [0 if canonical_label(p) == canonical_label(t) else 1 for p, t in pairs]
        self.score.update(predicted, truth)
        if conf is not None and self.loss is not None:
            self.loss.add(1 - np.asarray(wrong, dtype=np.float64), conf)
        changed = False
        if self._adwin is not None:
            for x in wrong:
                if self._adwin.update(float(x)):
                    self.concept_drift_detections += 1
                    last = self._adwin.last_change
                    if last is not None and last[1] > last[0]:
                        self.concept_drift_increases += 1
                    changed = True
        if self._error_test is not None and wrong:
            self.error_test_labels += len(wrong)
            for decision in self._error_test.update_labels(wrong):
                if decision.alarm:
                    self.error_test_alarms += 1
                    if len(self.error_test_details) < 3:
                        self.error_test_details.append(decision.detail)
                    changed = True
        return changed

    def observe_unmatched_feedback(self, count: int = 1) -> None:
        """Count labels that could not be matched to a prediction (unknown or forgotten id)."""
        self.feedback_unmatched += max(0, int(count))

    @property
    def error_test(self) -> ErrorRateDetector | None:
        """The per-label error-rate test against the reference accuracy, if the profile has it."""
        return self._error_test

    @property
    def adwin(self) -> Adwin | None:
        """The error-stream change detector (classification), for its width and recent mean."""
        return self._adwin

    # -- report --------------------------------------------------------------------------------

    def summary(self, now_ts: float) -> dict[str, Any]:
        """The window as an additive, JSON-serialisable dict plus its ``"derived"`` figures.

        See :mod:`edgewise_monitoring.summary` and ``docs`` for the format; undefined figures
        are ``None`` (never NaN), so ``json.dumps(..., allow_nan=False)`` always works.
        """
        ref = self.reference
        features = []
        if self.features is not None:
            for f_ref, counts in zip(ref.features, self.features.columns(), strict=True):
                entry: dict[str, Any] = {"name": f_ref.name}
                if self.embed_reference:
                    entry["expected"] = list(f_ref.proportions)
                entry["counts"] = [int(c) for c in counts.counts]
                entry["other"] = counts.other
                features.append(entry)
        prediction: dict[str, Any] | None = None
        if self.prediction is not None:
            h = self.prediction
            prediction = {"kind": h.kind}
            if h.kind == "categorical":
                prediction["labels"] = list(h.labels or ())
            else:
                prediction["edges"] = list(h.edges or ())
            if self.embed_reference:
                prediction["expected"] = (
                    list(ref.prediction.proportions) if ref.prediction is not None else None
                )
            prediction["counts"] = [int(c) for c in h.counts]
            prediction["other"] = h.other
        out: dict[str, Any] = {
            "schema": SUMMARY_SCHEMA,
            "task": self.task,
            "profile_id": ref.profile_id,
            "reference_n": ref.n,
            "params": dict(self.params),
            "start_ts": self.start_ts,
            "end_ts": float(now_ts),
            "count": self.count,
            "errors": self.errors,
            "latency": self.latency.to_dict(),
            "features": features,
            "prediction": prediction,
            "score": self.score.to_dict(),
            "confidence": self.confidence.to_dict() if self.confidence is not None else None,
            "concept_drift_detections": self.concept_drift_detections,
        }
        # optional additions (older summaries lack them; merge_summaries adds what is there)
        if self.task == "classification":
            out["concept_drift_increases"] = self.concept_drift_increases
        if self.expected is not None and self._calibration is not None:
            out["expected"] = {**self.expected.to_dict(),
                               "level_se": self._calibration.level_se}
        if self.loss is not None:
            out["loss"] = self.loss.to_dict()
        if self._error_test is not None:
            out["error_test"] = {"labels": self.error_test_labels,
                                 "alarms": self.error_test_alarms,
                                 "null_error": self._error_test.null_error,
                                 "details": list(self.error_test_details)}
        out["feedback_unmatched"] = self.feedback_unmatched
        out["derived"] = derive(out, ref)
        return out


def _checked_latency(latency_ms: float | npt.ArrayLike, rows: int) -> float | npt.NDArray[np.float64]:
    """One latency (a float) or one per row (an array), refused unless finite and >= 0."""
    lat = np.asarray(latency_ms, dtype=np.float64)
    if lat.ndim == 0:
        value = float(lat)
        if not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"latency must be a finite, non-negative number of ms, not {value}")
        return value
    lat = lat.reshape(-1)
    if lat.size != rows:
        raise ValueError(f"give one latency per call or one per row ({rows}), not {lat.size}")
    if not np.all(np.isfinite(lat)) or (lat < 0).any():
        raise ValueError("latencies must be finite, non-negative numbers of ms")
    return lat
