"""Model converters: turn a trained model into a verified edge artifact plus its manifest.

Importing this package is cheap; scikit-learn, skl2onnx, onnx, onnxruntime, TensorFlow, torch
and LiteRT are imported when a conversion needs them. ``convert`` / ``convert_one`` handle every
framework and format (docs/converters.md); ``convert_sklearn`` is the original scikit-learn →
ONNX entry point.
"""

from converters.api import Outcome, convert, convert_one, load_model_path
from converters.errors import (
    ConversionError,
    ModelFileError,
    ParityError,
    SampleDataError,
    UnsupportedModelError,
)
from converters.loading import load_array_file, load_labels_file, load_model_file, load_sample_file
from converters.precision import DEFAULT_TOLERANCES, Tolerance
from converters.profile import build_reference_profile
from converters.result import ConversionResult
from converters.sklearn_onnx import convert_sklearn

__all__ = [
    "DEFAULT_TOLERANCES",
    "ConversionError",
    "ConversionResult",
    "ModelFileError",
    "Outcome",
    "ParityError",
    "SampleDataError",
    "Tolerance",
    "UnsupportedModelError",
    "build_reference_profile",
    "convert",
    "convert_one",
    "convert_sklearn",
    "load_array_file",
    "load_labels_file",
    "load_model_file",
    "load_model_path",
    "load_sample_file",
]
