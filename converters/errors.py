"""Errors the converters raise, one per thing an operator has to fix.

Library code raises these; only the CLI and the HTTP layer turn them into exit codes and status
codes. Every message names what was wrong and what was expected, because the person reading it
is usually not the person who trained the model.
"""

from __future__ import annotations

# What the scikit-learn path handles, for messages that have to say it.
SUPPORTED_SKLEARN = (
    "fitted scikit-learn classifiers and regressors, or Pipelines ending in one, that skl2onnx "
    "can convert: linear models (LogisticRegression, Ridge, ...), trees and forests, "
    "GradientBoosting*, MLP*, SVC/SVR, k-NN, with standard preprocessing steps "
    "(StandardScaler, MinMaxScaler, PCA, ...); single-output only"
)


class ConversionError(Exception):
    """Base class: the model could not be turned into a deployable artifact."""


class UnsupportedModelError(ConversionError):
    """The object is not a model this converter can handle (wrong type, unfitted, no converter)."""

    def __init__(self, estimator: str, reason: str = "", supported: str = SUPPORTED_SKLEARN) -> None:
        self.estimator = estimator
        self.reason = reason
        self.supported = supported
        detail = f": {reason}" if reason else ""
        super().__init__(f"cannot convert {estimator}{detail}. Supported: {supported}")


class ParityError(ConversionError):
    """The artifact does not reproduce the source model on the sample closely enough."""

    def __init__(self, max_abs_diff: float, label_agreement: float, tolerance: float, n: int,
                 hint: str = "", min_label_agreement: float = 1.0, precision: str = "") -> None:
        self.max_abs_diff = max_abs_diff
        self.label_agreement = label_agreement
        self.tolerance = tolerance
        self.min_label_agreement = min_label_agreement
        self.n = n
        self.precision = precision
        what = f"converted {precision} model" if precision else "converted model"
        message = (
            f"{what} disagrees with the source on {n} sample rows: "
            f"max_abs_diff={max_abs_diff:.3g} (tolerance {tolerance:.3g}), "
            f"label_agreement={label_agreement:.4f} (required {min_label_agreement:g})"
        )
        super().__init__(f"{message}. {hint}" if hint else message)

    def figures(self) -> dict[str, float | int]:
        """The numbers behind the failure, for a report or an API response."""
        return {"n": self.n, "max_abs_diff": self.max_abs_diff,
                "label_agreement": self.label_agreement, "tolerance": self.tolerance,
                "min_label_agreement": self.min_label_agreement}


class SampleDataError(ConversionError):
    """The sample (or labels) cannot be used: wrong shape, not numeric, not finite, empty."""


class ModelFileError(ConversionError):
    """A model file that cannot be read: missing, corrupt, unknown extension, or not a model."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
