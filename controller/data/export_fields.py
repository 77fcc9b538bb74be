"""A stored prediction record's fields, decoded for the export: float32 arrays from base64,
each prediction's time and latency from the record's calls, the true labels by boot and
prediction number, the share the device sampled. Pure: numpy, no I/O."""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np


def per_row(calls: Any, n: int, ts: float, latency: float | None
            ) -> tuple[list[Any], list[Any]]:
    """Each prediction's time and latency from the record's ``calls`` ([rows, ts, latency]
    per call); the row's own when they do not add up to ``n``."""
    t: list[Any] = []
    lat: list[Any] = []
    if isinstance(calls, list):
        for seg in calls:
            if not (isinstance(seg, list) and len(seg) == 3 and isinstance(seg[0], int)):
                break
            t.extend([seg[1]] * seg[0])
            lat.extend([seg[2]] * seg[0])
    if len(t) != n:
        return [ts] * n, [latency] * n
    return t, lat


def per_row_arrays(calls: Any, n: int, ts: float, latency: float | None) -> tuple[Any, Any]:
    """:func:`per_row` as float arrays (NaN for an unknown latency), repeated in C."""
    if isinstance(calls, list) and calls and all(
            isinstance(seg, list) and len(seg) == 3 and isinstance(seg[0], int)
            and seg[0] >= 0 and isinstance(seg[1], (int, float))
            and (seg[2] is None or isinstance(seg[2], (int, float))) for seg in calls):
        counts = np.array([seg[0] for seg in calls], dtype=np.int64)
        if int(counts.sum()) == n:
            t = np.repeat(np.array([float(seg[1]) for seg in calls]), counts)
            lat = np.repeat(np.array([np.nan if seg[2] is None else float(seg[2])
                                      for seg in calls]), counts)
            return t, lat
    return np.full(n, ts), np.full(n, np.nan if latency is None else float(latency))


def by_boot(truth: dict[str, Any]) -> dict[str, tuple[Any, list[Any]]]:
    """prediction id ``<boot>-<n>`` -> label, regrouped as boot -> (sorted n, labels) for
    the columnar records' look-up by array (labels as an int64 array when all are ints)."""
    grouped: dict[str, dict[int, Any]] = {}
    for pid, value in truth.items():
        boot, _, number = pid.rpartition("-")
        if boot and number.isdigit():
            grouped.setdefault(boot, {})[int(number)] = value
    out = {}
    for boot, labels in grouped.items():
        keys = np.array(sorted(labels), dtype=np.int64)
        values: Any = [labels[int(k)] for k in keys]
        as_ints = int_array(values)
        out[boot] = (keys, as_ints if as_ints is not None else values)
    return out


def int_array(values: list[Any]) -> Any:
    """``values`` as an int64 array when every one is an int (not a bool), else None."""
    array = np.array(values)
    return array.astype(np.int64) if array.ndim == 1 and array.dtype.kind == "i" else None


def known_labels(boot_truth: tuple[Any, Any] | None, pids: Any) -> tuple[Any, Any]:
    """The true label of each prediction number, and the mask of those that have one: an
    int64 array (zero where unknown) when the labels are ints, else a list (None where
    unknown)."""
    n = len(pids)
    if boot_truth is None or n == 0:
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    keys, values = boot_truth
    at = np.searchsorted(keys, pids)
    found = at < len(keys)
    found[found] = keys[at[found]] == pids[found]
    if isinstance(values, np.ndarray):
        known_ints = np.zeros(n, dtype=np.int64)
        known_ints[found] = values[at[found]]
        return known_ints, found
    known: list[Any] = [None] * n
    for i in np.flatnonzero(found).tolist():
        known[i] = values[int(at[i])]
    return known, found


def f32(text: Any, n: int, width: int) -> Any:
    """A base64 float32 array of n x width, or None when absent or of another size."""
    if not isinstance(text, str) or width < 1:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        return None
    if len(raw) != 4 * n * width:
        return None
    return np.frombuffer(raw, dtype="<f4").reshape(n, width).astype(np.float64)


def floats(values: list[Any]) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            out.append(None)
        else:
            f = float(v)
            out.append(f if math.isfinite(f) else None)
    return out


def device_share(body: dict[str, Any]) -> float:
    """The share of predictions the device kept records of when it wrote this columnar record
    (its group's sampling, set from the controller, or its own prediction_sample_rate)."""
    share = body.get("share", 1.0)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 < share <= 1.0:
        return 1.0
    return float(share)
