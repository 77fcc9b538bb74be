"""Test helpers: reference profiles built the way the converter builds them (decile bins)."""

from __future__ import annotations

from typing import Any

import numpy as np


def quantile_bins(sample: np.ndarray, bins: int = 10) -> tuple[list[float], list[float]]:
    """Inner quantile cut points of ``sample`` and the sample's proportion in each bin."""
    edges = np.unique(np.quantile(sample, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, sample, side="right"), minlength=edges.size + 1)
    return edges.tolist(), (counts / sample.size).tolist()


def make_profile(
    reference: np.ndarray,
    predictions: np.ndarray | None = None,
    *,
    labels: list[Any] | None = None,
    bins: int = 10,
) -> dict[str, Any]:
    """A manifest-style reference profile for a (rows x features) reference sample."""
    features = []
    for j in range(reference.shape[1]):
        edges, props = quantile_bins(reference[:, j], bins)
        features.append({"name": f"x{j}", "edges": edges, "proportions": props})
    profile: dict[str, Any] = {"n": int(reference.shape[0]), "bins": bins, "features": features}
    if predictions is not None and labels is not None:
        counts = [int(np.sum(predictions == lab)) for lab in labels]
        profile["prediction"] = {
            "kind": "categorical",
            "labels": labels,
            "proportions": [c / predictions.size for c in counts],
        }
    elif predictions is not None:
        edges, props = quantile_bins(predictions, bins)
        profile["prediction"] = {"kind": "numeric", "edges": edges, "proportions": props}
    return profile


def assert_close(a: Any, b: Any, rel: float = 1e-9, path: str = "") -> None:
    """Recursive equality of JSON-like values, floats compared with a relative tolerance."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys {a.keys()} != {b.keys()}"
        for k in a:
            assert_close(a[k], b[k], rel, f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: {a} != {b}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, rel, f"{path}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert isinstance(b, (int, float)), f"{path}: {a!r} != {b!r}"
        assert abs(a - b) <= rel * max(1.0, abs(a), abs(b)), f"{path}: {a!r} != {b!r}"
    else:
        assert a == b and type(a) is type(b), f"{path}: {a!r} != {b!r}"
