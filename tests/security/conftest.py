from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.bad_input.conftest import iris_models  # noqa: F401  (fixture for the fuzz tests)
from tests.harness.fixtures import require_mosquitto
from tests.security.support import SecureFleet, start_secure_fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureFleet]:
    """A fleet CA and a Mosquitto running the generated TLS + ACL configuration."""
    require_mosquitto()
    secure = start_secure_fleet(tmp_path_factory.mktemp("secure-fleet"))
    yield secure
    secure.stop()
