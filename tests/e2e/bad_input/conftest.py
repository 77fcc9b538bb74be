"""Three small real ONNX iris models, versions 1-3 (``tests/harness/iris_models.py``)."""

from tests.harness.iris_models import iris_models  # noqa: F401  (fixture)
