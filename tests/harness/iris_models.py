"""Models for the bad-input tests: real scikit-learn models converted by ``convert_sklearn``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest

from edgewise_wire import ArtifactRef
from tests.harness.fake_controller import Artifact


@dataclass(frozen=True)
class IrisModels:
    a: Artifact  # logistic regression pipeline, version 1, one chunk
    b: Artifact  # random forest, version 2, several 1 KiB chunks
    c: Artifact  # another logistic regression, version 3, one chunk
    rows: np.ndarray  # iris features, float32
    labels_a: list[int]  # what model a predicts for ``rows``


@pytest.fixture(scope="session")
def iris_models() -> IrisModels:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from converters import convert_sklearn

    x, y = load_iris(return_X_y=True)
    rows = x.astype(np.float32)

    def convert(estimator, version: int, chunk_size: int | None = None) -> Artifact:  # type: ignore[no-untyped-def]
        result = convert_sklearn(estimator.fit(x, y), rows, name="iris", labels=y)
        manifest = dataclasses.replace(result.manifest, version=version)
        if chunk_size is not None:
            manifest = dataclasses.replace(
                manifest, artifact=ArtifactRef.describe(result.artifact, chunk_size))
        assert manifest.artifact.sha256 == ArtifactRef.describe(result.artifact).sha256
        return Artifact(manifest, result.artifact)

    a = convert(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), 1)
    b = convert(RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0), 2,
                chunk_size=1024)
    c = convert(make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=500)), 3)
    assert b.manifest.artifact.chunk_count >= 3, "model b must span several chunks"
    assert len({a.manifest.artifact.sha256, b.manifest.artifact.sha256,
                c.manifest.artifact.sha256}) == 3
    import onnxruntime as ort

    session = ort.InferenceSession(a.data, providers=["CPUExecutionProvider"])
    labels_a = session.run([a.manifest.label_output], {a.manifest.inputs[0].name: rows})[0]
    return IrisModels(a, b, c, rows, [int(v) for v in np.asarray(labels_a).ravel()])
