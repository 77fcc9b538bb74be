"""Every test is marked by the tier its folder is in (``unit``, ``integration``, ``e2e``; see
docs/architecture.md), so ``pytest -m unit`` or ``pytest tests/unit`` runs one tier. The shared
fixtures (brokers, PostgreSQL) come from :mod:`tests.harness.fixtures`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.harness.fixtures"]

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.path)).resolve().relative_to(TESTS).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
