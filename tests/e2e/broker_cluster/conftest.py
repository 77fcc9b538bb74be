"""A model for the clustered-broker tests (a real scikit-learn pipeline, converted)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def iris_models() -> tuple[Any, Any]:
    """Two different artifacts of the iris pipeline (versions 1 and 2 of a rollout)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from converters import convert_sklearn
    from simulator.workload import load_dataset

    data = load_dataset("iris")

    def convert(c: float) -> Any:
        estimator = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500))
        return convert_sklearn(estimator.fit(data.features, data.target), data.features,
                               name="iris", labels=data.target, feature_names=data.feature_names)

    return convert(1.0), convert(0.5)
