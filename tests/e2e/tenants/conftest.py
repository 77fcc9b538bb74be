"""Fixtures for the several-fleets tests: two iris models of different names, and a fresh
PostgreSQL database per test (for replicas of one controller)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from tests.harness.fixtures import fresh_database


@pytest.fixture
def pg_url(pg_admin: sa.Engine) -> Iterator[str]:
    with fresh_database(pg_admin) as url:
        yield url


@pytest.fixture(scope="session")
def tenant_models() -> dict[str, Any]:
    """One converted iris model per tenant, named after it (so a device shows whose it runs)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from converters import convert_sklearn
    from simulator.workload import load_dataset

    data = load_dataset("iris")
    models = {}
    for name, c in (("iris-acme", 1.0), ("iris-globex", 0.5)):
        estimator = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500))
        models[name] = convert_sklearn(estimator.fit(data.features, data.target),
                                       data.features, name=name, labels=data.target,
                                       feature_names=data.feature_names)
    return models
