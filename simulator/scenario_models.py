"""The models a scenario trains and rolls out: an estimator on a bundled dataset, converted to ONNX
with its parity checked, as a data scientist would push it."""

from __future__ import annotations

import warnings
from typing import Any

from simulator.scenario import ModelSpec
from simulator.workload import load_dataset


def train_model(spec: ModelSpec, estimator: str | None = None, seed: int | None = None) -> Any:
    """Train ``estimator`` on the bundled dataset and convert it (parity checked) to ONNX."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from converters import convert_sklearn

    kind = estimator or spec.estimator
    rs = spec.seed if seed is None else seed
    data = load_dataset(spec.dataset)
    if kind == "random_forest":
        model: Any = RandomForestClassifier(n_estimators=20, max_depth=8, random_state=rs)
    elif kind == "mlp":
        model = make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=400, random_state=rs))
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=rs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a few iterations short is fine
        model.fit(data.features, data.target)
    return convert_sklearn(model, data.features, name=spec.registry_name, labels=data.target,
                           feature_names=data.feature_names)
