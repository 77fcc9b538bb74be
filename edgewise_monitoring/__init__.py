"""Monitoring maths both sides compute: drift, latency, accuracy, confidence, change detection.

The agent accumulates a window with it; the controller merges windows across devices and time
and judges them. Neutral ground beside :mod:`edgewise_wire` (it ships to the device with the
agent); it needs numpy, which is why it is not part of the stdlib-only contract.

Pure computation on numpy arrays, with no I/O and no clock (timestamps are passed in), so the
agent's adapters feed it and tests drive it directly. Every accumulator is additive (counts and
sums) and serialises to JSON; :func:`merge_summaries` adds window summaries across windows and
devices and recomputes the derived figures, for the controller as well as the agent.
"""

from edgewise_monitoring.accuracy import ClassificationScore, RegressionScore
from edgewise_monitoring.adwin import Adwin
from edgewise_monitoring.confidence import CONFIDENCE_EDGES, ConfidenceEstimate
from edgewise_monitoring.errors import IncompatibleAggregates, MonitoringError, ProfileError
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
from edgewise_monitoring.reference import ReferenceProfile, profile_id
from edgewise_monitoring.summary import SUMMARY_SCHEMA, derive, merge_summaries
from edgewise_monitoring.window import MonitoringWindow

__all__ = [
    "BOUNDS_MS",
    "CONFIDENCE_EDGES",
    "MIN_ROWS_PER_BIN",
    "RELATIVE_BUCKET_WIDTH",
    "SUMMARY_SCHEMA",
    "Adwin",
    "BinnedCounts",
    "ClassificationScore",
    "ConfidenceEstimate",
    "DriftVerdict",
    "FeatureCounts",
    "IncompatibleAggregates",
    "Label",
    "LatencyHistogram",
    "MonitoringError",
    "MonitoringWindow",
    "ProfileError",
    "ReferenceProfile",
    "RegressionScore",
    "canonical_label",
    "derive",
    "drift_threshold",
    "drift_verdict",
    "merge_summaries",
    "profile_id",
    "psi",
    "psi_noise_floor",
]
