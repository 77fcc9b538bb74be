"""The known drift history the drift view's tests look at (``tests/harness/drift_fleet.py``)."""

from tests.harness.drift_fleet import drift_fleet  # noqa: F401  (fixture)
