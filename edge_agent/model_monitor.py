"""The agent's monitoring window for its active model, and when to close it.

:class:`ModelMonitor` owns one :class:`~edgewise_monitoring.MonitoringWindow` for the model
the agent serves. The agent feeds it every inference call (vectorised over the call's rows) and
every feedback label; every ``window_s`` seconds, at a model switch and at a clean stop, it
closes the window into a ``metrics`` telemetry record, which the agent writes to its outbox like
any other record (store-and-forward: a window is as durable as a prediction record once it is in
the outbox). No I/O and no clock of its own: times are passed in.

Monitoring must never break serving: a call the window cannot account for (a shape the profile
does not describe, a label that is not a number or a string) is counted in :attr:`stats` and
logged at most once per reason, and the prediction goes on.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from typing import Any

import numpy as np

from edgewise_monitoring import MonitoringError, MonitoringWindow
from edgewise_wire import Manifest

log = logging.getLogger("edgewise.agent.monitor")

# Calls are buffered and accounted for together: a histogram update costs the same for one row
# as for a thousand, so a single-row prediction would otherwise pay it in full (~20 us). The
# buffer is drained at every window summary and when it holds this many calls or rows.
MAX_BUFFERED_CALLS = 512
MAX_BUFFERED_ROWS = 20_000


class ModelMonitor:
    def __init__(self, window_s: float, device_id: str = "") -> None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s must be a positive number of seconds, not {window_s}")
        self.window_s = window_s
        self.device_id = device_id
        self.window: MonitoringWindow | None = None
        self.model: str | None = None
        self.version: int | None = None
        self.stats: Counter[str] = Counter()
        self._deadline = math.inf
        self._warned: set[str] = set()
        # (rows, labels, scores, latency_ms) per call, oldest first; a deque because an
        # application thread may predict while the loop drains it
        self._pending: deque[tuple[np.ndarray, np.ndarray, np.ndarray | None, float]] = deque()
        self._pending_rows = 0

    # -- window life cycle ---------------------------------------------------------------------

    def switch(self, manifest: Manifest | None, now: float, mono: float) -> dict[str, Any] | None:
        """Close the current window (its record is returned) and open one for ``manifest``."""
        record = self.close(now)
        self._pending.clear()
        self._pending_rows = 0
        self.window, self.model, self.version = None, None, None
        self._deadline = math.inf
        if manifest is None:
            return record
        try:
            window = MonitoringWindow(
                manifest.reference_profile or None, manifest.task, manifest.class_labels,
                start_ts=now, calibration_offset=_calibration_offset(manifest),
                embed_reference=False)
        except (MonitoringError, ValueError, TypeError) as exc:
            # a profile the agent cannot use: keep counts, latency and scores, skip drift
            self._warn("profile", f"reference profile of {manifest.model}:{manifest.version} "
                                  f"unusable, drift is not measured: {exc}")
            try:
                window = MonitoringWindow(None, manifest.task, None, start_ts=now,
                                          embed_reference=False)
            except (MonitoringError, ValueError, TypeError) as exc2:
                self._warn("window", f"no monitoring window for {manifest.model}: {exc2}")
                return record
        self.window, self.model, self.version = window, manifest.model, manifest.version
        self._deadline = mono + self.window_s
        return record

    def due(self, mono: float) -> bool:
        return self.window is not None and mono >= self._deadline

    def roll(self, now: float, mono: float) -> dict[str, Any] | None:
        """Close the window into a record and start the next one (same model)."""
        record = self.close(now)
        if self.window is not None:
            self.window.reset(now)
            self._deadline = mono + self.window_s
        return record

    def close(self, now: float) -> dict[str, Any] | None:
        """The current window as a ``metrics`` record (None without a window)."""
        window = self.window
        if window is None:
            return None
        self.drain()
        try:
            summary = window.summary(max(now, window.start_ts))
        except (MonitoringError, ValueError, TypeError) as exc:  # not expected: counted, logged
            self._warn("summary", f"window summary failed: {exc}")
            return None
        self.stats["windows"] += 1
        return {"kind": "metrics", "ts": summary["end_ts"], "model": self.model,
                "version": self.version, "summary": summary}

    # -- accumulation --------------------------------------------------------------------------

    def observe(self, rows: np.ndarray, labels: np.ndarray, scores: np.ndarray | None,
                latency_ms: float) -> None:
        """One successful inference call: its input rows, outputs and latency (buffered)."""
        if self.window is None:
            return
        self._pending.append((rows, labels, scores, latency_ms))
        self._pending_rows += len(rows)
        if len(self._pending) >= MAX_BUFFERED_CALLS or self._pending_rows >= MAX_BUFFERED_ROWS:
            self.drain()

    def drain(self) -> None:
        """Account for the buffered calls in the window, vectorised over all their rows."""
        window, pending = self.window, self._pending
        calls = []
        while pending:
            try:
                calls.append(pending.popleft())
            except IndexError:  # emptied by another thread between the check and the pop
                break
        self._pending_rows = 0
        if window is None or not calls:
            return
        try:
            scores = [c[2] for c in calls]
            latencies = np.array([c[3] for c in calls], dtype=np.float64)
            if np.all(np.isfinite(latencies)) and not (latencies < 0).any():
                # observe() checks everything before it counts anything, so a failure here
                # leaves the window untouched for the one-by-one pass below
                window.observe(np.concatenate([c[0] for c in calls]),
                               np.concatenate([c[1].reshape(-1) for c in calls]),
                               None if any(s is None for s in scores)
                               else np.concatenate([_confidence(s) for s in scores
                                                    if s is not None]))
                window.latency.record_many(latencies)
                return
        except (MonitoringError, ValueError, TypeError):
            pass  # the calls do not fit together: account for them one by one
        for rows, labels, scores_, latency_ms in calls:
            try:
                window.observe(rows, labels, scores_, latency_ms)
            except (MonitoringError, ValueError, TypeError) as exc:
                self.stats["calls_not_monitored"] += 1
                self._warn("observe", f"an inference call was not accounted for: {exc}")

    def observe_error(self, rows: int) -> None:
        if self.window is not None:
            self.window.observe(None, np.zeros(max(rows, 1)), error=True)

    def observe_feedback(self, model: str | None, version: int | None, predicted: Any,
                         truth: Any, confidence: Any = None) -> None:
        """A label for a prediction of ``model:version``; scored if that is this window's model.

        ``confidence`` (optional): the probability the model gave that prediction, for the
        window's log loss and Brier score."""
        if self.window is None or (model, version) != (self.model, self.version):
            self.stats["feedback_other_version"] += 1
            return
        try:
            self.window.observe_feedback(predicted, truth, confidence)
        except (MonitoringError, ValueError, TypeError) as exc:
            self.stats["feedback_not_scored"] += 1
            self._warn("feedback", f"a feedback label was not scored: {exc}")

    def observe_unmatched_feedback(self) -> None:
        """A label whose prediction id is unknown (or forgotten): counted in the window."""
        self.stats["feedback_unmatched"] += 1
        if self.window is not None:
            self.window.observe_unmatched_feedback()

    def _warn(self, reason: str, message: str) -> None:
        self.stats[f"warning_{reason}"] += 1
        if reason not in self._warned:
            self._warned.add(reason)
            log.warning("%s: %s (logged once; counted in monitor stats)", self.device_id, message)


def _confidence(scores: np.ndarray) -> np.ndarray:
    """The predicted class's probability per row (a probability matrix, or one per row)."""
    return scores.max(axis=1) if scores.ndim == 2 else scores.reshape(-1)


def _calibration_offset(manifest: Manifest) -> float:
    """``accuracy - mean confidence`` on the converter's labelled sample, when it recorded one."""
    value = manifest.parity.get("calibration_offset") if manifest.parity else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return 0.0
