"""Synthetic no-change and shifted streams for the detector tests (fast: counts drawn directly).

A reference profile is built the way the converter builds it (decile edges of a reference
sample of ``m`` rows), so the reference proportions carry their own sampling error, which is
what makes a long no-change stream hard for a sequential test.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.harness.profiles import make_profile


def normal_profile(rng: np.random.Generator, features: int = 8, m: int = 5000,
                   classes: int | None = 2) -> tuple[dict[str, Any], list[np.ndarray]]:
    """A profile of ``features`` standard normal features (and a categorical prediction with
    ``classes`` equally likely labels), with the edges per feature."""
    ref = rng.normal(size=(m, features))
    labels = list(range(classes)) if classes else None
    preds = rng.integers(0, classes, m) if classes else None
    profile = make_profile(ref, preds, labels=labels)
    edges = [np.asarray(f["edges"]) for f in profile["features"]]
    return profile, edges


def window_counts(x: np.ndarray, edges: list[np.ndarray]) -> list[list[int]]:
    """Counts per reference bin of each column of ``x`` (NaN left out)."""
    out = []
    for j, e in enumerate(edges):
        col = x[:, j]
        col = col[~np.isnan(col)]
        out.append(np.bincount(np.searchsorted(e, col, side="right"),
                               minlength=e.size + 1).tolist())
    return out


def true_bin_probabilities(edges: list[np.ndarray], shift: float = 0.0) -> list[np.ndarray]:
    """Probability of each bin for a standard normal shifted by ``shift``."""
    from math import erf, sqrt

    out = []
    for e in edges:
        cdf = np.array([0.0] + [0.5 * (1 + erf((v - shift) / sqrt(2))) for v in e] + [1.0])
        out.append(np.diff(cdf))
    return out
