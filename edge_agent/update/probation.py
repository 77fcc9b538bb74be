"""The probation verdict: does a freshly activated model stay? Pure: the clock is passed in.

The agent feeds every prediction call the new model serves during its window (rows, failed rows,
call latency) and asks for a verdict; see :class:`~edgewise_wire.manifest.ProbationPolicy`
for the thresholds. Invalid input is the caller's fault and is not fed here: only inference
errors count against the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgewise_wire.manifest import ProbationPolicy

# Latencies kept for the p95: a bounded reservoir of the most recent calls (a busy device serves
# thousands per second; the window's tail is what matters and memory must stay flat).
MAX_LATENCY_SAMPLES = 4096
# An early failure needs this many failed rows, so one unlucky call cannot roll a model back.
EARLY_FAILURE_MIN_ERRORS = 5


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str


@dataclass
class ProbationWatch:
    policy: ProbationPolicy
    started_at: float  # monotonic seconds
    rows: int = 0
    failed_rows: int = 0
    _latencies: list[float] = field(default_factory=list)

    def observe(self, rows: int, latency_ms: float) -> None:
        self.rows += rows
        if len(self._latencies) >= MAX_LATENCY_SAMPLES:
            self._latencies.pop(0)
        self._latencies.append(latency_ms)

    def observe_error(self, rows: int) -> None:
        self.rows += rows
        self.failed_rows += rows

    @property
    def error_rate(self) -> float:
        return self.failed_rows / self.rows if self.rows else 0.0

    def p95_latency_ms(self) -> float | None:
        if not self._latencies:
            return None
        ordered = sorted(self._latencies)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]

    def remaining_s(self, now: float) -> float:
        return max(0.0, self.started_at + self.policy.duration_s - now)

    def verdict(self, now: float) -> Verdict | None:
        """None while the window runs; a failure as soon as the errors already decide it."""
        policy = self.policy
        if (self.failed_rows >= EARLY_FAILURE_MIN_ERRORS and self.rows >= policy.min_predictions
                and self.error_rate > policy.max_error_rate):
            return Verdict(False, self._error_reason())
        if self.remaining_s(now) > 0:
            return None
        if self.rows < policy.min_predictions:
            return Verdict(True, f"probation of {policy.duration_s:g} s saw {self.rows} "
                                 f"predictions (fewer than {policy.min_predictions}): "
                                 "nothing to judge, committed")
        if self.error_rate > policy.max_error_rate:
            return Verdict(False, self._error_reason())
        p95 = self.p95_latency_ms()
        if policy.max_p95_latency_ms is not None and p95 is not None \
                and p95 > policy.max_p95_latency_ms:
            return Verdict(False, f"too slow in probation: p95 latency {p95:.3f} ms over "
                                  f"{len(self._latencies)} calls, limit "
                                  f"{policy.max_p95_latency_ms:g} ms")
        latency = f", p95 {p95:.3f} ms" if p95 is not None else ""
        return Verdict(True, f"probation passed: {self.rows} predictions, "
                             f"{self.failed_rows} failed{latency}")

    def _error_reason(self) -> str:
        return (f"errors in probation: {self.failed_rows} of {self.rows} predictions failed "
                f"({self.error_rate:.1%}, limit {self.policy.max_error_rate:.1%})")
