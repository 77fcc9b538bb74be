"""The agent's device-health bookkeeping, bound to one agent: the sampler, the gauges only the
agent knows (outbox backlog, broker round-trip time, reconnects), which model version a call is
charged to, and when a ``health`` record is due. ``EdgeAgent`` calls it at four points (a model
switch, each inference call, each telemetry tick, the stop) and queues what it returns."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from edge_agent.health.sampler import HealthSampler

Record = dict[str, Any]


class AgentHealth:
    """``clock``: the agent's wall clock; ``connects``: how often its link connected;
    ``gauges``: the agent's own readings at a sample (e.g. ``outbox_backlog``, ``rtt_ms``)."""

    def __init__(self, sampler: HealthSampler, *, clock: Callable[[], float],
                 connects: Callable[[], int], gauges: Callable[[], dict[str, float]]) -> None:
        self.sampler = sampler
        self._clock = clock
        self._connects = connects
        self._gauges = gauges

    def switch(self, model: str | None, version: int | None,
               session_bytes: int | None) -> Record | None:
        """The previous model's window closes (its record returned); the new model's resource
        cost is measured in windows of its own. Nothing when the model is the same."""
        window = self.sampler.window
        if (window.model, window.version) == (model, version):
            return None
        return self.sampler.switch(self._clock(), time.monotonic(), self._connects(), model,
                                   version, session_bytes)

    def call_started(self) -> float | None:
        """The process CPU clock at the start of a call, on every ``COST_SAMPLE``-th call only:
        it is a system call, too dear for every single-row prediction (bench/bench_health.py)."""
        return time.process_time() if self.sampler.time_this_call() else None

    def call_ended(self, model: str, version: int, rows: int, latency_ms: float,
                   cpu_started: float | None) -> None:
        """Charge a call to its model version's window (a call that raced a switch is not)."""
        window = self.sampler.window
        if (window.model, window.version) == (model, version):
            window.observe_call(rows, latency_ms,
                                None if cpu_started is None else time.process_time() - cpu_started)

    def tick(self) -> Record | None:
        """Sample when a sample is due; the window's record when it closes."""
        mono = time.monotonic()
        if self.sampler.due(mono):
            self.sampler.sample(mono, self._gauges(), self._connects())
        if self.sampler.closing(mono):
            return self.sampler.roll(self._clock(), mono, self._connects())
        return None

    def roll(self) -> Record | None:
        """The partial window's record, at a clean stop."""
        return self.sampler.roll(self._clock(), time.monotonic(), self._connects())
