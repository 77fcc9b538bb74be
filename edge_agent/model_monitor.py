"""The agent's monitoring window for its active model, and when to close it.

:class:`ModelMonitor` owns one :class:`~edge_agent.monitoring.MonitoringWindow` for the model
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
from collections import Counter
from typing import Any

import numpy as np

from edge_agent.monitoring import MonitoringError, MonitoringWindow
from edge_agent.protocol import Manifest

log = logging.getLogger("edgewise.agent.monitor")


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

    # -- window life cycle ---------------------------------------------------------------------

    def switch(self, manifest: Manifest | None, now: float, mono: float) -> dict[str, Any] | None:
        """Close the current window (its record is returned) and open one for ``manifest``."""
        record = self.close(now)
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
        """One successful inference call: its input rows, outputs and latency."""
        if self.window is None:
            return
        try:
            self.window.observe(rows, labels, scores, latency_ms)
        except (MonitoringError, ValueError, TypeError) as exc:
            self.stats["calls_not_monitored"] += 1
            self._warn("observe", f"an inference call was not accounted for: {exc}")

    def observe_error(self, rows: int) -> None:
        if self.window is not None:
            self.window.observe(None, np.zeros(max(rows, 1)), error=True)

    def observe_feedback(self, model: str | None, version: int | None, predicted: Any,
                         truth: Any) -> None:
        """A label for a prediction of ``model:version``; scored if that is this window's model."""
        if self.window is None or (model, version) != (self.model, self.version):
            self.stats["feedback_other_version"] += 1
            return
        try:
            self.window.observe_feedback(predicted, truth)
        except (MonitoringError, ValueError, TypeError) as exc:
            self.stats["feedback_not_scored"] += 1
            self._warn("feedback", f"a feedback label was not scored: {exc}")

    def _warn(self, reason: str, message: str) -> None:
        self.stats[f"warning_{reason}"] += 1
        if reason not in self._warned:
            self._warned.add(reason)
            log.warning("%s: %s (logged once; counted in monitor stats)", self.device_id, message)


def _calibration_offset(manifest: Manifest) -> float:
    """``accuracy - mean confidence`` on the converter's labelled sample, when it recorded one."""
    value = manifest.parity.get("calibration_offset") if manifest.parity else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return 0.0
