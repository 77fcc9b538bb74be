"""Model converters: turn a trained model into a verified edge artifact plus its manifest.

Importing this package is cheap; scikit-learn, skl2onnx, onnx and onnxruntime are imported when
a conversion runs.
"""

from converters.errors import (
    ConversionError,
    ModelFileError,
    ParityError,
    SampleDataError,
    UnsupportedModelError,
)
from converters.loading import load_labels_file, load_model_file, load_sample_file
from converters.profile import build_reference_profile
from converters.result import ConversionResult
from converters.sklearn_onnx import convert_sklearn

__all__ = [
    "ConversionError",
    "ConversionResult",
    "ModelFileError",
    "ParityError",
    "SampleDataError",
    "UnsupportedModelError",
    "build_reference_profile",
    "convert_sklearn",
    "load_labels_file",
    "load_model_file",
    "load_sample_file",
]
