"""The known fleet the view tests look at (``tests/harness/web_fleet.py``)."""

from tests.harness.web_fleet import fleet, fresh  # noqa: F401  (fixtures)
