"""One canonical form for class labels, so counts keyed by label add up across devices.

Labels reach the monitoring code from several places: ``np.int64`` from an ONNX label output,
``str`` from a JSON feedback message, ``float`` from a scikit-learn model trained on a float
target, ``np.str_`` from an object array. Python already treats ``1 == 1.0 == np.int64(1)`` as one
dictionary key, but the *representation* that ends up in JSON would depend on which one arrived
first. :func:`canonical_label` fixes it: numpy scalars become Python scalars, ``bool`` becomes
``int``, integral floats become ``int``, and NaN or infinities are refused. Strings stay strings,
so ``1`` and ``"1"`` remain two different labels (JSON keeps that difference too, because labels
are written as JSON *values* in lists, never as object keys).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

Label = int | float | str


def canonical_label(value: Any) -> Label:
    """The canonical Python scalar for a label (see the module docstring for the rules)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar -> Python scalar
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a class label must be finite, not {value!r}")
        return int(value) if value.is_integer() else value
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"a class label must be a number or a string, not {type(value).__name__}")


def label_sort_key(label: Label) -> tuple[int, float, str]:
    """A total order over mixed labels: numbers first (numerically), then strings."""
    if isinstance(label, str):
        return (1, 0.0, label)
    return (0, float(label), "")


def sorted_labels(labels: Iterable[Label]) -> list[Label]:
    """Distinct canonical labels in the stable order used for every JSON output."""
    return sorted({canonical_label(x) for x in labels}, key=label_sort_key)


def as_flat_list(values: Any) -> list[Any]:
    """A flat Python list from a scalar, a sequence or an array of any shape."""
    if isinstance(values, (str, bytes)) or np.ndim(values) == 0:
        return [values]
    return list(np.asarray(values, dtype=object).reshape(-1))
