"""Population stability index (PSI) and a drift threshold that knows the window size.

PSI compares observed bin proportions ``o_i`` with reference proportions ``e_i``::

    PSI = sum_i (o_i - e_i) * ln(o_i / e_i)

It is the symmetrised Kullback-Leibler divergence ``KL(o||e) + KL(e||o)``: zero when the two
distributions agree, growing as they part. For a normal feature whose mean shifts by ``delta``
standard deviations, PSI is about ``delta**2`` (0.25 for half a standard deviation).

**Empty bins.** ``ln(o/e)`` is infinite when a bin is empty on one side only, and a short window
often leaves a rare bin empty. Both proportion vectors are therefore floored at ``eps`` (1e-4 by
default) before the sum, without renormalising. An empty observed bin with reference proportion
``e`` then contributes ``(e - eps) * ln(e / eps)``: about 0.69 for ``e = 0.1``, a bounded penalty
instead of infinity. A bin empty on both sides contributes exactly zero, which is why the
``other`` bucket (reference proportion 0) can always be appended to a comparison.

**Noise.** Both sides are samples: the window has ``n`` rows and the reference ``m``. Without any
drift, ``PSI * (1/n + 1/m)**-1`` behaves like a chi-square variable with ``bins - 1`` degrees of
freedom, so the expected PSI (its *noise floor*) is ``(bins - 1) * (1/n + 1/m)``, and its 99th
percentile is about 2.5 times that (measured: 0.055 at n = 500, m large, 10 bins). A fixed
threshold is thus wrong at one end or the other: the common 0.2 misses real drift at large n and
0.1 raises false alarms on windows much smaller than 500 rows. :func:`drift_threshold` takes
the larger of a base threshold (0.1, right for n >= 500) and 2.5 times the noise floor.

The chi-square approximation needs enough rows per bin. With 10 decile bins, a window of 50 rows
leaves some bin empty 5% of the time (``10 * 0.9**50``), and that bin's 0.69 penalty alone beats
the threshold: measured false alarms were 37% at n = 20-30, 6% at 50, 1.4% at 100, 1% at 200 and
0% at 500 (m = 5000). :func:`drift_verdict` therefore withholds a verdict below
:data:`MIN_ROWS_PER_BIN` (10) rows per reference bin.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

DEFAULT_EPS = 1e-4
DEFAULT_BASE = 0.1
DEFAULT_FACTOR = 2.5
# A drift verdict is only given once the window holds this many rows per reference bin.
MIN_ROWS_PER_BIN = 10


def psi(
    expected_props: npt.ArrayLike,
    observed_counts: npt.ArrayLike,
    eps: float = DEFAULT_EPS,
) -> float:
    """PSI of observed bin counts against reference proportions (see the module docstring).

    ``observed_counts`` may hold one more entry than ``expected_props``: the ``other`` bucket
    (NaN or unknown categories), whose reference proportion is zero.
    """
    e = np.asarray(expected_props, dtype=np.float64).reshape(-1)
    o = np.asarray(observed_counts, dtype=np.float64).reshape(-1)
    if o.size == e.size + 1:
        e = np.append(e, 0.0)
    if o.size != e.size:
        raise ValueError(f"{o.size} observed bins against {e.size} reference proportions")
    if (o < 0).any() or (e < 0).any():
        raise ValueError("counts and proportions must be non-negative")
    total = o.sum()
    if total <= 0:
        raise ValueError("PSI of an empty window is undefined")
    if eps <= 0:
        raise ValueError("eps must be positive")
    op = np.maximum(o / total, eps)
    ep = np.maximum(e, eps)
    return float(np.sum((op - ep) * np.log(op / ep)))


def psi_noise_floor(bins: int, n: int, m: int) -> float:
    """Expected PSI without drift: ``(bins - 1) * (1/n + 1/m)`` for windows of n, reference of m."""
    if bins < 1 or n < 1 or m < 1:
        raise ValueError("bins, n and m must be positive")
    return (bins - 1) * (1.0 / n + 1.0 / m)


def drift_threshold(
    bins: int,
    n: int,
    m: int,
    base: float = DEFAULT_BASE,
    factor: float = DEFAULT_FACTOR,
) -> float:
    """PSI above which a window of ``n`` rows is called drifted: ``max(base, factor * floor)``.

    With the defaults the false-alarm rate stays near 1% whatever the window size (the factor
    2.5 sits at the 99th percentile of the no-drift PSI), while large windows keep the 0.1
    threshold that catches a shift of about a third of a standard deviation.
    """
    return max(base, factor * psi_noise_floor(bins, n, m))


@dataclass(frozen=True)
class DriftVerdict:
    """A PSI, the threshold it was held against, the window size, and the outcome."""

    psi: float
    threshold: float
    n: int
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def drift_verdict(
    expected_props: npt.ArrayLike,
    observed_counts: npt.ArrayLike,
    reference_n: int,
    *,
    eps: float = DEFAULT_EPS,
    base: float = DEFAULT_BASE,
    factor: float = DEFAULT_FACTOR,
    min_rows_per_bin: int = MIN_ROWS_PER_BIN,
) -> DriftVerdict | None:
    """PSI and threshold for one histogram, or ``None`` while the window is too small to judge.

    ``bins`` for the threshold is the number of reference bins (the ``other`` bucket adds no
    degree of freedom: it is empty in the reference). The verdict is withheld (``None``) below
    ``min_rows_per_bin`` rows per bin, where the PSI is mostly empty-bin penalty.
    """
    e = np.asarray(expected_props, dtype=np.float64).reshape(-1)
    o = np.asarray(observed_counts, dtype=np.float64).reshape(-1)
    n = int(o.sum())
    bins = max(1, e.size)
    if n == 0 or n < min_rows_per_bin * bins:
        return None
    value = psi(e, o, eps)
    threshold = drift_threshold(bins, n, reference_n, base, factor)
    if not math.isfinite(value):
        raise ValueError("PSI is not finite")
    return DriftVerdict(psi=value, threshold=threshold, n=n, drifted=value > threshold)
