"""Cost of the on-device monitoring accounting, per prediction.

Measures, for a single row and for a batch of 1,000 rows of a 64-feature model (10 reference
bins per feature, 10 classes):

- ``searchsorted_bare``: one bare ``np.searchsorted`` call over all the batch's values (rows x
  features) against one edge array: the same binning work with no per-feature bookkeeping, the
  floor of any numpy implementation;
- ``naive_per_feature``: ``np.searchsorted`` + ``np.bincount`` per feature, the obvious loop;
- ``feature_counts``: :class:`FeatureCounts.add`, every feature histogram in one vectorised pass;
- ``window_observe``: the whole :meth:`MonitoringWindow.observe` (features, prediction histogram,
  confidence, latency).

Also the cost of building a summary and merging 100 of them, and the summary size (with and
without the embedded reference proportions). Prints a table
and writes ``bench/results/drift.json``. Run: ``.venv/bin/python bench/bench_drift.py``.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repo importable

import numpy as np  # noqa: E402

from bench.common import write_result  # noqa: E402
from edgewise_monitoring import FeatureCounts, MonitoringWindow, merge_summaries  # noqa: E402

N_FEATURES = 64
BINS = 10
LABELS = list(range(10))


def _profile(rng: np.random.Generator) -> dict[str, Any]:
    ref = rng.normal(size=(5000, N_FEATURES))
    features = []
    for j in range(N_FEATURES):
        edges = np.quantile(ref[:, j], np.linspace(0, 1, BINS + 1)[1:-1])
        counts = np.bincount(np.searchsorted(edges, ref[:, j], side="right"), minlength=BINS)
        features.append(
            {"name": f"x{j}", "edges": edges.tolist(), "proportions": (counts / 5000).tolist()}
        )
    return {
        "n": 5000,
        "bins": BINS,
        "features": features,
        "prediction": {"kind": "categorical", "labels": LABELS, "proportions": [0.1] * 10},
    }


def _per_call_us(fn: Callable[[], None]) -> float:
    """Median over 5 repeats (of about 0.2 s each) of the mean time per call, in microseconds."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    runs = timer.repeat(repeat=5, number=number)
    return statistics.median(runs) / number * 1e6


def main() -> None:
    rng = np.random.default_rng(0)
    profile = _profile(rng)
    edges = [np.asarray(f["edges"]) for f in profile["features"]]
    results: dict[str, Any] = {
        "machine": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "platform": platform.platform(),
            "processor": platform.machine(),
        },
        "setup": {"features": N_FEATURES, "bins": BINS, "classes": len(LABELS)},
        "per_prediction_us": {},
    }
    print(f"{N_FEATURES} features x {BINS} bins, {len(LABELS)} classes; microseconds per prediction")
    print(f"{'method':<24}{'batch=1':>12}{'batch=1000':>14}")
    for batch in (1, 1000):
        x = rng.normal(size=(batch, N_FEATURES))
        labels = rng.integers(0, 10, size=batch)
        probs = rng.uniform(0.3, 1.0, size=batch)
        counts = [np.zeros(e.size + 1, dtype=np.int64) for e in edges]
        fc = FeatureCounts(edges)
        window = MonitoringWindow(profile, "classification", LABELS)
        flat = x.ravel()
        e0 = edges[0]

        def searchsorted_bare(flat: np.ndarray = flat, e0: np.ndarray = e0) -> None:
            np.searchsorted(e0, flat, side="right")

        def naive_per_feature(x: np.ndarray = x, counts: list[np.ndarray] = counts) -> None:
            for j, e in enumerate(edges):
                counts[j] += np.bincount(np.searchsorted(e, x[:, j], side="right"), minlength=e.size + 1)

        def feature_counts(x: np.ndarray = x, fc: FeatureCounts = fc) -> None:
            fc.add(x)

        lat = 0.8 if batch == 1 else rng.uniform(0.5, 2.0, size=batch)

        def window_observe(
            x: np.ndarray = x,
            labels: np.ndarray = labels,
            probs: np.ndarray = probs,
            window: MonitoringWindow = window,
            lat: Any = lat,
        ) -> None:
            window.observe(x, labels, probs, latency_ms=lat)

        for name, fn in (
            ("searchsorted_bare", searchsorted_bare),
            ("naive_per_feature", naive_per_feature),
            ("feature_counts", feature_counts),
            ("window_observe", window_observe),
        ):
            us = _per_call_us(fn) / batch
            results["per_prediction_us"].setdefault(name, {})[f"batch_{batch}"] = round(us, 4)

    for name, row in results["per_prediction_us"].items():
        print(f"{name:<24}{row['batch_1']:>12.3f}{row['batch_1000']:>14.4f}")

    # Summary and merge cost, and the size of what a device publishes per window.
    window = MonitoringWindow(profile, "classification", LABELS)
    x = rng.normal(size=(1000, N_FEATURES))
    window.observe(x, rng.integers(0, 10, size=1000), rng.uniform(0.3, 1, 1000), latency_ms=1.0)
    window.observe_feedback(rng.integers(0, 10, 200), rng.integers(0, 10, 200))
    summary = window.summary(60.0)
    summaries = [summary] * 100
    summary_us = _per_call_us(lambda: None if window.summary(60.0) else None)
    merge_us = _per_call_us(lambda: None if merge_summaries(summaries) else None)
    size = len(json.dumps(summary, separators=(",", ":"), allow_nan=False))
    lean = MonitoringWindow(profile, "classification", LABELS, embed_reference=False)
    lean.observe(x, rng.integers(0, 10, size=1000), rng.uniform(0.3, 1, 1000), latency_ms=1.0)
    lean_size = len(json.dumps(lean.summary(60.0), separators=(",", ":"), allow_nan=False))
    results["summary"] = {
        "summary_ms": round(summary_us / 1000, 3),
        "merge_100_summaries_ms": round(merge_us / 1000, 3),
        "summary_json_bytes": size,
        "summary_json_bytes_without_reference": lean_size,
    }
    print(
        f"summary(): {summary_us / 1000:.2f} ms; merge of 100 summaries: {merge_us / 1000:.1f} ms; "
        f"summary JSON: {size} bytes ({lean_size} with embed_reference=False)"
    )
    print(f"wrote {write_result('drift', results)}")


if __name__ == "__main__":
    main()
