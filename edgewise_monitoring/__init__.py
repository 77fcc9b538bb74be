"""Monitoring maths both sides compute: drift, latency, accuracy, confidence, change detection.

The agent accumulates a window with it; the controller merges windows across devices and time
and judges them. Neutral ground beside :mod:`edgewise_wire` (it ships to the device with the
agent); it needs numpy, which is why it is not part of the stdlib-only contract.

The sequential detectors (:mod:`~edgewise_monitoring.accuracy_test`,
:mod:`~edgewise_monitoring.regression_test`, and on the controller
:mod:`controller.monitoring.drift_test`, bundled per model version by
:class:`controller.monitoring.watch.ModelWatch`) judge those summaries with a stated false-alarm
rate and explain every alarm; :mod:`~edgewise_monitoring.calibration` gives the calibrated
label-free accuracy estimate.

Pure computation on numpy arrays, with no I/O and no clock (timestamps are passed in), so the
agent's adapters feed it and tests drive it directly. Every accumulator is additive (counts and
sums) and serialises to JSON; :func:`merge_summaries` adds window summaries across windows and
devices and recomputes the derived figures, for the controller as well as the agent.
"""

import importlib
from typing import TYPE_CHECKING, Any

from edgewise_monitoring.accuracy import ClassificationScore, RegressionScore
from edgewise_monitoring.accuracy_test import ErrorRateDetector, ErrorRateSettings
from edgewise_monitoring.adwin import Adwin
from edgewise_monitoring.calibration import CalibrationMap, fit_calibration
from edgewise_monitoring.confidence import CONFIDENCE_EDGES, ConfidenceEstimate
from edgewise_monitoring.errors import IncompatibleAggregates, MonitoringError, ProfileError
from edgewise_monitoring.expected_accuracy import ExpectedAccuracy
from edgewise_monitoring.histogram import BinnedCounts, FeatureCounts
from edgewise_monitoring.labels import Label, canonical_label
from edgewise_monitoring.latency import BOUNDS_MS, RELATIVE_BUCKET_WIDTH, LatencyHistogram
from edgewise_monitoring.psi import (
    MIN_ROWS_PER_BIN,
    DriftVerdict,
    drift_threshold,
    drift_verdict,
    psi,
    psi_noise_floor,
)
from edgewise_monitoring.quality import ProbabilisticLoss, prediction_bias
from edgewise_monitoring.reference import ReferenceProfile, profile_id
from edgewise_monitoring.regression_test import MeanShiftDetector, MeanShiftSettings
from edgewise_monitoring.sequential import Decision, EvidenceCusum
from edgewise_monitoring.summary import SUMMARY_SCHEMA, derive, merge_summaries
from edgewise_monitoring.window import MonitoringWindow

if TYPE_CHECKING:
    from edgewise_monitoring.evidence import PREDICTION, WindowEvidence, pool, pool_by_profile

# Names the controller imports from here, resolved on first use. This once spared the agent the
# detectors it never runs; they moved to controller.monitoring, and evidence is loaded anyway
# (accuracy_test imports it), so today it saves the agent nothing (tests/unit/test_docs_figures.py
# measured it at 0.0 MiB).
_LAZY = {
    "PREDICTION": "evidence", "WindowEvidence": "evidence", "pool": "evidence",
    "pool_by_profile": "evidence",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgewise_monitoring' has no attribute {name!r}")
    return getattr(importlib.import_module(f"edgewise_monitoring.{module}"), name)

__all__ = [
    "BOUNDS_MS",
    "CONFIDENCE_EDGES",
    "MIN_ROWS_PER_BIN",
    "PREDICTION",
    "RELATIVE_BUCKET_WIDTH",
    "SUMMARY_SCHEMA",
    "Adwin",
    "BinnedCounts",
    "CalibrationMap",
    "ClassificationScore",
    "ConfidenceEstimate",
    "Decision",
    "DriftVerdict",
    "ErrorRateDetector",
    "ErrorRateSettings",
    "EvidenceCusum",
    "ExpectedAccuracy",
    "FeatureCounts",
    "IncompatibleAggregates",
    "Label",
    "LatencyHistogram",
    "MeanShiftDetector",
    "MeanShiftSettings",
    "MonitoringError",
    "MonitoringWindow",
    "ProbabilisticLoss",
    "ProfileError",
    "ReferenceProfile",
    "RegressionScore",
    "WindowEvidence",
    "canonical_label",
    "derive",
    "drift_threshold",
    "drift_verdict",
    "fit_calibration",
    "merge_summaries",
    "pool",
    "pool_by_profile",
    "prediction_bias",
    "profile_id",
    "psi",
    "psi_noise_floor",
]
