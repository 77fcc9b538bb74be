"""Time buckets for every view over time: a range cut into a few aligned buckets of a width a
person reads without arithmetic. Pure (``now`` is an argument).

It sits in the shared bottom layer because two features chart over time: the fleet views
(``controller/web/``) and monitoring's per-feature drift views (``controller/monitoring/``),
and a chart of one must line up with a chart of the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Bucket widths a person reads without arithmetic: seconds, minutes, hours, days.
NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
              43200, 86400)


@dataclass(frozen=True)
class BucketPlan:
    """``count`` buckets of ``size`` seconds from ``start``; aligned to ``size`` so that two
    polls a few seconds apart put an event in the same bucket."""

    start: float
    size: float
    count: int

    @property
    def end(self) -> float:
        return self.start + self.size * self.count

    def index(self, ts: float) -> int | None:
        i = math.floor((ts - self.start) / self.size)
        return i if 0 <= i < self.count else None

    def bucket_start(self, index: int) -> float:
        return self.start + index * self.size


def plan_buckets(now: float, window: float, buckets: int) -> BucketPlan:
    """At most about ``buckets`` buckets covering ``[now - window, now]``."""
    if window <= 0 or buckets < 1:
        raise ValueError("window and buckets must be positive")
    wanted = window / buckets
    size = next((s for s in NICE_STEPS if s >= wanted), math.ceil(wanted / 86400) * 86400)
    start = math.floor((now - window) / size) * size
    count = max(1, math.ceil((now - start) / size))
    return BucketPlan(float(start), float(size), count)
