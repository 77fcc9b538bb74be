"""Fixtures for the replica tests: a fresh PostgreSQL database per test and one iris model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from tests.harness.fixtures import fresh_database


@pytest.fixture
def pg_url(pg_admin: sa.Engine) -> Iterator[str]:
    """An empty database of this test's own (replicas must create the schema themselves)."""
    with fresh_database(pg_admin) as url:
        yield url


@pytest.fixture(scope="session")
def iris_model() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from converters import convert_sklearn
    from simulator.workload import load_dataset

    data = load_dataset("iris")
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    return convert_sklearn(estimator.fit(data.features, data.target), data.features,
                           name="iris", labels=data.target, feature_names=data.feature_names)
