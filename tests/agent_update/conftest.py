"""Reuses the bad-input suite's iris models (three small real ONNX models, versions 1-3)."""

from tests.bad_input.conftest import iris_models  # noqa: F401  (a fixture, used by name)
