"""Latency histogram with one fixed, log-spaced bucket scheme shared by every device.

Quantiles do not add: the p95 of a fleet is not the mean of the devices' p95s. Bucket counts do.
Every device therefore counts latencies into the *same* buckets, and any p50/p95/p99 is read
from the summed counts, for one window, one device or the whole fleet.

**Buckets.** Bounds are ``10 ** (k / 10)`` milliseconds for ``k = -20 .. 48``: ten buckets per
decade from 0.01 ms to 63 s, plus an underflow bucket ``[0, 0.01)`` and an overflow bucket
``[63 s, inf)``; 70 buckets in all. A value ``v`` goes to the bucket ``[lo, hi)`` with
``lo <= v < hi``. The scheme is a constant of the protocol (:data:`SCHEME`); changing it would
make old and new histograms impossible to add.

**Quantile error.** :meth:`LatencyHistogram.quantile` finds the bucket holding the requested
rank and interpolates linearly inside it, after narrowing the bucket to the observed
``[min, max]``. The true quantile lies in the same bucket, so the error is below one bucket
width: ``hi - lo = lo * (10**0.1 - 1)``, i.e. less than 25.9% of the value, and in practice
a few percent because latencies spread smoothly inside a bucket. Values below 0.01 ms are
bounded by the observed minimum instead; above 63 s, by the observed maximum.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from edgewise_monitoring.errors import IncompatibleAggregates

BUCKETS_PER_DECADE = 10
_FIRST_EXP = -20  # 10 ** (-20 / 10) = 0.01 ms
_LAST_EXP = 48  # 10 ** (48 / 10) ~ 63,096 ms
#: Inner bucket bounds in milliseconds (69 of them, hence 70 buckets).
BOUNDS_MS: npt.NDArray[np.float64] = 10.0 ** (
    np.arange(_FIRST_EXP, _LAST_EXP + 1, dtype=np.float64) / BUCKETS_PER_DECADE
)
_BOUNDS_LIST: list[float] = BOUNDS_MS.tolist()
N_BUCKETS = BOUNDS_MS.size + 1
#: Names the bucket scheme in serialised histograms, so a mismatch is refused, not mis-added.
SCHEME = f"log10/{BUCKETS_PER_DECADE}:{_FIRST_EXP}..{_LAST_EXP}"
#: Worst-case relative error of a quantile inside one bucket: the relative bucket width.
RELATIVE_BUCKET_WIDTH = 10.0 ** (1.0 / BUCKETS_PER_DECADE) - 1.0


def _check(ms: float) -> None:
    if not ms >= 0.0 or math.isinf(ms):  # also refuses NaN
        raise ValueError(f"a latency must be a finite, non-negative number of ms, not {ms!r}")


class LatencyHistogram:
    """Additive latency counts (milliseconds) with count, sum, min and max."""

    __slots__ = ("count", "counts", "max", "min", "sum")

    def __init__(self) -> None:
        self.counts: npt.NDArray[np.int64] = np.zeros(N_BUCKETS, dtype=np.int64)
        self.count: int = 0
        self.sum: float = 0.0
        self.min: float = math.inf
        self.max: float = -math.inf

    def record(self, ms: float) -> None:
        """Count one latency. Pure Python (``bisect``): cheaper than numpy for a single value."""
        ms = float(ms)
        _check(ms)
        self.counts[bisect.bisect_right(_BOUNDS_LIST, ms)] += 1
        self.count += 1
        self.sum += ms
        self.min = min(self.min, ms)
        self.max = max(self.max, ms)

    def record_many(self, ms: npt.ArrayLike) -> None:
        """Count every latency of an array (vectorised)."""
        x = np.asarray(ms, dtype=np.float64).reshape(-1)
        if x.size == 0:
            return
        if not np.all(np.isfinite(x)) or (x < 0).any():
            raise ValueError("latencies must be finite, non-negative numbers of ms")
        idx = np.searchsorted(BOUNDS_MS, x, side="right")
        self.counts += np.bincount(idx, minlength=N_BUCKETS)
        self.count += int(x.size)
        self.sum += float(x.sum())
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other`` into this histogram (in place)."""
        self.counts += other.counts
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile (0 <= q <= 1) in ms, or ``None`` for an empty histogram.

        Interpolated linearly within the bucket that holds rank ``q * count``, the bucket first
        narrowed to the observed [min, max]; exact to within one bucket width (module docstring).
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must lie in [0, 1]")
        if self.count == 0:
            return None
        if q == 0.0:
            return self.min
        if q == 1.0:
            return self.max
        rank = q * self.count
        cum = np.cumsum(self.counts)
        i = int(np.searchsorted(cum, rank, side="left"))
        before = float(cum[i - 1]) if i > 0 else 0.0
        lo = _BOUNDS_LIST[i - 1] if i > 0 else 0.0
        hi = _BOUNDS_LIST[i] if i < len(_BOUNDS_LIST) else self.max
        lo = max(lo, self.min)
        hi = min(hi, self.max)
        frac = (rank - before) / float(self.counts[i])
        return lo + frac * (hi - lo)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form; ``min``/``max`` are ``None`` while empty."""
        return {
            "scheme": SCHEME,
            "counts": [int(c) for c in self.counts],
            "count": self.count,
            "sum": self.sum,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatencyHistogram:
        if d.get("scheme") != SCHEME:
            raise IncompatibleAggregates(
                f"latency bucket scheme {d.get('scheme')!r} is not this agent's {SCHEME!r}"
            )
        counts = np.asarray(d["counts"], dtype=np.int64).reshape(-1)
        if counts.size != N_BUCKETS or (counts < 0).any():
            raise ValueError(f"a latency histogram needs {N_BUCKETS} non-negative counts")
        out = cls()
        out.counts = counts.copy()
        out.count = int(d["count"])
        if out.count != int(counts.sum()):
            raise ValueError("latency count does not match the bucket counts")
        out.sum = float(d["sum"])
        if out.count:
            out.min = float(d["min"])
            out.max = float(d["max"])
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        return self.to_dict() == other.to_dict()
