"""Precisions an artifact can have, and how close to its source each must stay by default.

A float32 artifact should reproduce its source to rounding error; float16 and int8 trade
accuracy for size and speed, so they get looser default tolerances. Every default can be
overridden per conversion (``Tolerance``), and the figures that were actually reached land in
the manifest either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

PRECISIONS = ("float32", "float16", "int8-dynamic", "int8-static")

# What each format can be produced in (see docs/converters.md for the per-source matrix).
FORMAT_PRECISIONS = {
    "onnx": ("float32", "int8-dynamic", "int8-static"),
    "tflite": ("float32", "float16", "int8-dynamic", "int8-static"),
}

# The command line's --quantize names.
QUANTIZE_ALIASES = {"none": "float32", "fp32": "float32", "float32": "float32",
                    "fp16": "float16", "float16": "float16",
                    "int8": "int8-dynamic", "int8-dynamic": "int8-dynamic",
                    "int8-static": "int8-static", "int8-full": "int8-static"}


@dataclass(frozen=True)
class Tolerance:
    """How far an artifact may stray from its source on the sample.

    ``max_abs_diff`` bounds the largest absolute difference of scores (classifiers: class
    probabilities or logits, whatever the model emits) or predicted values (regressors), in the
    model's own units. ``min_label_agreement`` is the share of sample rows whose predicted class
    must match (rows where the source's two best classes are closer than ``max_abs_diff`` count
    as agreeing: rounding may legitimately pick either).
    """

    max_abs_diff: float
    min_label_agreement: float = 1.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.max_abs_diff) or self.max_abs_diff < 0:
            raise ValueError(f"max_abs_diff must be a finite number >= 0, got {self.max_abs_diff}")
        if not 0.0 <= self.min_label_agreement <= 1.0:
            raise ValueError(
                f"min_label_agreement must be between 0 and 1, got {self.min_label_agreement}")


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(1e-4, 1.0),
    "float16": Tolerance(1e-2, 0.99),
    "int8-dynamic": Tolerance(5e-2, 0.97),
    "int8-static": Tolerance(1e-1, 0.95),
}


def normalize_precision(name: str) -> str:
    """``fp16`` → ``float16``, ``int8`` → ``int8-dynamic``, ...; ValueError for unknown names."""
    key = name.strip().lower()
    if key not in QUANTIZE_ALIASES:
        raise ValueError(f"unknown precision {name!r}; use one of "
                         f"{', '.join(sorted(set(QUANTIZE_ALIASES) - set(PRECISIONS)))} "
                         f"or {', '.join(PRECISIONS)}")
    return QUANTIZE_ALIASES[key]


def tolerance_for(precision: str, overrides: Mapping[str, Tolerance] | None = None) -> Tolerance:
    """The tolerance for ``precision``: an override for it, for ``"*"``, or the default."""
    overrides = overrides or {}
    if precision in overrides:
        return overrides[precision]
    if "*" in overrides:
        return overrides["*"]
    return DEFAULT_TOLERANCES[precision]


def smoke_tolerance(precision: str, tolerance: Tolerance) -> float:
    """How far a device may be from the converter's own run of the same artifact.

    Same bytes, another build of the runtime: float32 agrees to rounding, quantized kernels may
    differ by a quantum or two.
    """
    if precision == "float32":
        return max(tolerance.max_abs_diff * 10, 1e-4)
    if precision == "float16":
        return 2e-3
    return 2e-2
