"""Monitoring math that runs on the device: drift, latency, accuracy, confidence, change detection.

Pure computation on numpy arrays, with no I/O and no clock (timestamps are passed in), so the
agent's adapters feed it and tests drive it directly. Every accumulator is additive (counts and
sums) and serialises to JSON; :func:`merge_summaries` adds window summaries across windows and
devices and recomputes the derived figures, for the controller as well as the agent.
"""

from edge_agent.monitoring.accuracy import ClassificationScore, RegressionScore
from edge_agent.monitoring.adwin import Adwin
from edge_agent.monitoring.confidence import CONFIDENCE_EDGES, ConfidenceEstimate
from edge_agent.monitoring.errors import IncompatibleAggregates, MonitoringError, ProfileError
from edge_agent.monitoring.histogram import BinnedCounts, FeatureCounts
from edge_agent.monitoring.labels import Label, canonical_label
from edge_agent.monitoring.latency import BOUNDS_MS, RELATIVE_BUCKET_WIDTH, LatencyHistogram
from edge_agent.monitoring.psi import (
    MIN_ROWS_PER_BIN,
    DriftVerdict,
    drift_threshold,
    drift_verdict,
    psi,
    psi_noise_floor,
)
from edge_agent.monitoring.reference import ReferenceProfile, profile_id
from edge_agent.monitoring.summary import SUMMARY_SCHEMA, derive, merge_summaries
from edge_agent.monitoring.window import MonitoringWindow

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
