"""The health sampler: reads the sources every ``sample_s``, keeps the open window, closes it
every ``window_s`` and at a model switch. The agent passes what only it knows (outbox backlog,
broker round trip, connection count) with each sample; times are passed in.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any, Protocol

from edge_agent.health.window import HealthWindow

log = logging.getLogger("edgewise.agent.health")

COST_SAMPLE = 16  # one inference call in this many has its CPU time read


class ReadingSource(Protocol):
    """Where samples come from: :class:`~edge_agent.health.sources.HealthSources` on a device,
    a simulated board in the simulator. ``read()`` includes ``cpu_s``, the process's
    cumulative CPU seconds; ``problems`` counts readings left out, by reason."""

    problems: Counter[str]

    def read(self) -> dict[str, float]: ...


class HealthSampler:
    def __init__(self, sources: ReadingSource, *, sample_s: float, window_s: float,
                 started_ts: float, now: float, mono: float, device_id: str = "") -> None:
        if not (math.isfinite(sample_s) and sample_s > 0 and math.isfinite(window_s)
                and window_s >= sample_s):
            raise ValueError(f"health sampling every {sample_s} s in windows of {window_s} s: "
                             "both must be positive and the window at least one sample long")
        self.sources = sources
        self.device_id = device_id
        self.sample_s = sample_s
        self.window_s = window_s
        self.started_ts = started_ts
        self.window = HealthWindow(now)
        self._next_sample = mono
        self._deadline = mono + window_s
        self._last_cpu: tuple[float, float] | None = None  # (monotonic, cpu seconds)
        self._connects_at_open: int | None = None
        self._has_throttling = False
        self._problems_logged: set[str] = set()
        self._calls = 0

    def time_this_call(self) -> bool:
        """Whether this inference call's CPU time is read (the first, then one in
        :data:`COST_SAMPLE`); the window extrapolates from those calls' rows."""
        self._calls += 1
        return self._calls % COST_SAMPLE == 1

    def due(self, mono: float) -> bool:
        return mono >= self._next_sample

    def sample(self, mono: float, extra: dict[str, float], connects: int) -> None:
        """Read the sources once; ``extra``: readings the agent has (outbox_backlog, rtt_ms);
        ``connects``: how often the MQTT link has connected so far."""
        self._next_sample = mono + self.sample_s
        reading = self.sources.read()
        cpu = reading.pop("cpu_s")
        if self._last_cpu is not None and mono > self._last_cpu[0]:
            reading["cpu_percent"] = max(0.0, 100.0 * (cpu - self._last_cpu[1])
                                         / (mono - self._last_cpu[0]))
        self._last_cpu = (mono, cpu)
        self._has_throttling = self._has_throttling or "throttled" in reading
        reading.update(extra)
        if self._connects_at_open is None:
            self._connects_at_open = connects
        self.window.add(reading)
        kinds = set(self.sources.problems)
        if not kinds <= self._problems_logged:
            # a board's broken sensor stays broken: said once per kind of problem, then counted
            self._problems_logged |= kinds
            log.warning("%s: health readings left out (counted): %s", self.device_id,
                        dict(self.sources.problems))

    def closing(self, mono: float) -> bool:
        return mono >= self._deadline

    def roll(self, now: float, mono: float, connects: int) -> dict[str, Any] | None:
        """Close the window into a ``health`` record (None if it holds no sample) and open the
        next one for the same model."""
        w = self.window
        return self.switch(now, mono, connects, w.model, w.version, w.session_bytes)

    def switch(self, now: float, mono: float, connects: int, model: str | None,
               version: int | None, session_bytes: int | None) -> dict[str, Any] | None:
        """Close the window (its record is returned, None if it holds no sample) and open one
        for ``model:version`` (None: no model served)."""
        window = self.window
        reconnects = max(0, connects - (self._connects_at_open if self._connects_at_open
                                        is not None else connects))
        self.window = HealthWindow(now, model, version, session_bytes)
        self._deadline = mono + self.window_s
        self._connects_at_open = connects
        if window.samples == 0:
            return None
        return window.record(now, reconnects=reconnects, agent_started_ts=self.started_ts,
                             has_throttling=self._has_throttling)
