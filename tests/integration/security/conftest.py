"""A fleet CA and a Mosquitto with the generated TLS and ACL configuration (``fleet``)."""

from tests.harness.iris_models import iris_models  # noqa: F401, E402  (fixture for the fuzz tests)
from tests.harness.secure_fleet import fleet  # noqa: F401  (fixture)
