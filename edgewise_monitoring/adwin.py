"""ADWIN: an adaptive sliding window that drops its old part when the stream's mean changes.

Bifet & Gavaldà, "Learning from Time-Changing Data with Adaptive Windowing", SDM 2007; this is
ADWIN2, the exponential-histogram version, following the reference implementation in MOA.

**Why.** Feature-drift tests cannot see *concept* drift, where the inputs look the same but
their relation to the target changed. Once labels arrive, the 0/1 error stream shows it: its
mean (the error rate) jumps. ADWIN watches that stream with no window size to tune, and its
false-alarm rate is bounded by ``delta``.

**Test.** The window ``W`` (the most recent ``n`` values) is split into an older part ``W0`` of
``n0`` values and a recent part ``W1`` of ``n1``. Their means differ significantly when::

    |mean(W0) - mean(W1)| > sqrt(2 * m * var(W) * ln(2 ln(n) / delta)) + (2/3) * m * ln(2 ln(n) / delta)

with ``m = 1/(n0 - L + 1) + 1/(n1 - L + 1)`` (``L`` = the minimum sub-window length, 5) and
``var(W)`` the variance of the whole window: a Bernstein bound, tighter than Hoeffding's when the
error rate is low. On a cut, the oldest bucket is dropped and the test repeats, so the window
shrinks until no split is significant: what remains is the data since the change, and
:attr:`Adwin.mean` is the new error rate.

**Memory and time.** Values are kept in buckets holding ``2**i`` values each (row ``i``), at
most ``max_buckets`` (5) per row; two full buckets of a row merge into one of the next. Each
bucket stores only its sum and its variance sum (``M2``), so ``n`` values take
``O(max_buckets * log n)`` memory, and the cut is tested only at bucket boundaries, every
``clock`` (32) values.
"""

from __future__ import annotations

import math


class Adwin:
    """ADWIN2 change detector for a stream of values in [0, 1] (e.g. 0/1 prediction errors)."""

    def __init__(
        self,
        delta: float = 0.002,
        *,
        clock: int = 32,
        max_buckets: int = 5,
        min_window: int = 5,
    ) -> None:
        if not 0.0 < delta < 1.0:
            raise ValueError("delta must lie in (0, 1)")
        if clock < 1 or max_buckets < 2 or min_window < 1:
            raise ValueError("clock >= 1, max_buckets >= 2 and min_window >= 1 are required")
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window = min_window
        # rows[i] holds buckets of 2**i values, oldest first, as [sum, M2] pairs.
        self._rows: list[list[list[float]]] = [[]]
        self._width = 0
        self._total = 0.0
        self._m2 = 0.0  # sum of squared deviations from the mean over the whole window
        self._seen = 0
        self.detections = 0
        self.increases = 0
        # (mean before, mean after) of the last detected change: after > before means the
        # recent values are higher (for an error stream: the model got worse)
        self.last_change: tuple[float, float] | None = None

    # -- state ---------------------------------------------------------------------------------

    @property
    def width(self) -> int:
        """Number of values in the current window."""
        return self._width

    @property
    def mean(self) -> float:
        """Mean of the current window (the recent error rate); 0.0 while empty."""
        return self._total / self._width if self._width else 0.0

    @property
    def variance(self) -> float:
        return self._m2 / self._width if self._width else 0.0

    @property
    def seen(self) -> int:
        """Values fed since creation."""
        return self._seen

    # -- update --------------------------------------------------------------------------------

    def update(self, x: float) -> bool:
        """Add one value; ``True`` when a change was detected (the window then shrank)."""
        x = float(x)
        if not math.isfinite(x):
            raise ValueError("ADWIN values must be finite")
        self._seen += 1
        self._insert(x)
        if self._seen % self.clock != 0 or self._width <= self.min_window:
            return False
        before = self.mean
        changed = self._shrink()
        if changed:
            self.detections += 1
            self.last_change = (before, self.mean)
            if self.mean > before:
                self.increases += 1
        return changed

    def _insert(self, x: float) -> None:
        self._width += 1
        if self._width > 1:
            # Welford: M2 grows by (n-1)/n * (x - previous mean)^2.
            prev_mean = self._total / (self._width - 1)
            self._m2 += (self._width - 1) * (x - prev_mean) ** 2 / self._width
        self._total += x
        self._rows[0].append([x, 0.0])
        self._compress()

    def _compress(self) -> None:
        """Merge the two oldest buckets of any row holding more than ``max_buckets``."""
        i = 0
        while i < len(self._rows) and len(self._rows[i]) > self.max_buckets:
            (s1, v1), (s2, v2) = self._rows[i].pop(0), self._rows[i].pop(0)
            size = 1 << i
            # M2 of a union: M2a + M2b + na*nb/(na+nb) * (mean_a - mean_b)^2, na = nb = size.
            m2 = v1 + v2 + size * size * (s1 / size - s2 / size) ** 2 / (2 * size)
            if i + 1 == len(self._rows):
                self._rows.append([])
            self._rows[i + 1].append([s1 + s2, m2])
            i += 1

    def _drop_oldest(self) -> None:
        """Remove the oldest bucket, updating width, total and M2 exactly."""
        row = len(self._rows) - 1
        s, m2 = self._rows[row].pop(0)
        size = 1 << row
        self._width -= size
        self._total -= s
        if self._width > 0:
            mean_rest = self._total / self._width
            self._m2 -= m2 + size * self._width * (s / size - mean_rest) ** 2 / (size + self._width)
            self._m2 = max(self._m2, 0.0)  # rounding
        else:
            self._m2 = 0.0
        while len(self._rows) > 1 and not self._rows[-1]:
            self._rows.pop()

    def _cut(self, n0: int, n1: int, s0: float, s1: float) -> bool:
        n = self._width
        dd = math.log(2.0 * math.log(n) / self.delta)
        m = 1.0 / (n0 - self.min_window + 1) + 1.0 / (n1 - self.min_window + 1)
        eps = math.sqrt(2.0 * m * self.variance * dd) + 2.0 / 3.0 * dd * m
        return abs(s0 / n0 - s1 / n1) > eps

    def _shrink(self) -> bool:
        """Drop old buckets while some split of the window shows a significant change."""
        changed = False
        while self._width > self.min_window and self._find_cut():
            self._drop_oldest()
            changed = True
        return changed

    def _find_cut(self) -> bool:
        """Is there a split, at a bucket boundary, whose two sides differ significantly?

        Scans from the oldest bucket to the newest, moving one bucket at a time from the
        recent side ``W1`` to the old side ``W0``.
        """
        n0, s0 = 0, 0.0
        n1, s1 = self._width, self._total
        limit = self.min_window + 1
        for row in range(len(self._rows) - 1, -1, -1):
            size = 1 << row
            for bucket_sum, _ in self._rows[row]:
                n0 += size
                n1 -= size
                s0 += bucket_sum
                s1 -= bucket_sum
                if n1 <= 0:
                    return False
                if n0 > limit and n1 > limit and self._cut(n0, n1, s0, s1):
                    return True
        return False
