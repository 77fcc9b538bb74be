"""What the local-API tests share: an iris model converted to ONNX, with its data."""

from __future__ import annotations

import pytest

from converters import convert_sklearn
from simulator.workload import load_dataset


@pytest.fixture(scope="module")
def iris_artifact():  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    data = load_dataset("iris")
    model = LogisticRegression(max_iter=500).fit(data.features, data.target)
    return convert_sklearn(model, data.features, name="iris"), data
