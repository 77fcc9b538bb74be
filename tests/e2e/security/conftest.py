"""A fleet CA and a Mosquitto with the generated TLS and ACL configuration (``fleet``)."""

from tests.harness.secure_fleet import fleet  # noqa: F401  (fixture)
