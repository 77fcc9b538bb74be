"""Fixtures for the update end-to-end tests: real models, a signing key, and a data dir in which a
real daemon installed model v1 (copied by each test that needs a device already running v1)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgewise_wire import ArtifactRef
from simulator.broker import BrokerProcess
from tests.harness.agents import Artifact, Signer, device, same_ref

CHUNK = 1024  # the smallest chunk the protocol allows: a few KiB model spans several chunks


@dataclass(frozen=True)
class Models:
    v1: Artifact  # logistic regression pipeline, version 1, one chunk
    v2: Artifact  # random forest, version 2, several chunks
    v3: Artifact  # another random forest, version 3, several chunks
    # v2's graph behind a Reshape to the smoke batch's shape: passes its smoke test (8 rows),
    # fails at run time for any other batch size (version 2, its own sha256)
    fragile: Artifact
    rows: list[list[float]]  # iris features


def _fragile(base: Artifact, smoke_rows: int) -> bytes:
    """``base`` with its input reshaped to a constant [smoke_rows, n_features] first."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(base.data)
    graph = model.graph
    name = graph.input[0].name
    fixed = f"{name}_fixed_batch"
    for node in graph.node:
        node.input[:] = [fixed if i == name else i for i in node.input]
    shape = numpy_helper.from_array(
        np.array([smoke_rows, base.manifest.n_features], dtype=np.int64), "fixed_batch_shape")
    graph.initializer.append(shape)
    graph.node.insert(0, helper.make_node("Reshape", [name, shape.name], [fixed]))
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture(scope="session")
def models() -> Models:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from converters import convert_sklearn

    x, y = load_iris(return_X_y=True)
    rows = x.astype(np.float32)

    def convert(estimator: Any, version: int) -> Artifact:
        result = convert_sklearn(estimator.fit(x, y), rows, name="iris", labels=y)
        manifest = dataclasses.replace(result.manifest, version=version,
                                       artifact=ArtifactRef.describe(result.artifact, CHUNK))
        return Artifact(manifest, result.artifact)

    v1 = convert(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), 1)
    v2 = convert(RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0), 2)
    v3 = convert(RandomForestClassifier(n_estimators=8, max_depth=5, random_state=1), 3)
    smoke_rows = len(v2.manifest.smoke_tests[0].inputs)
    fragile_bytes = _fragile(v2, smoke_rows)
    fragile = Artifact(dataclasses.replace(
        v2.manifest, artifact=ArtifactRef.describe(fragile_bytes, CHUNK)), fragile_bytes)
    assert v2.manifest.artifact.chunk_count >= 6 and v3.manifest.artifact.chunk_count >= 5
    assert len({a.sha256 for a in (v1, v2, v3, fragile)}) == 4
    _check_fragile(fragile, smoke_rows)
    return Models(v1, v2, v3, fragile, rows.tolist())


def _check_fragile(fragile: Artifact, smoke_rows: int) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(fragile.data, providers=["CPUExecutionProvider"])
    smoke = fragile.manifest.smoke_tests[0]
    got = session.run([fragile.manifest.label_output],
                      {"input": np.asarray(smoke.inputs, dtype=np.float32)})[0]
    assert got.tolist() == list(smoke.expected_labels), "the fragile model must pass its smoke test"
    with pytest.raises(Exception):  # noqa: B017 (onnxruntime raises its own untyped errors)
        session.run(None, {"input": np.zeros((1, 4), dtype=np.float32)})
    assert smoke_rows != 1


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer.generate()


@pytest.fixture(scope="session")
def v1_data_dir(broker: BrokerProcess, signer: Signer, models: Models,
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir in which a real daemon installed v1 (signed) and stopped cleanly."""
    workdir = tmp_path_factory.mktemp("template-v1")
    with device(workdir, broker.address, signer) as (agent, ctl):
        ctl.serve(models.v1)
        ctl.publish_desired(signer.desired(models.v1, "dep-template-v1"))
        agent.start()
        ctl.wait_reported(lambda r: r.state == "active" and same_ref(r.active, models.v1), 30,
                          "v1 active on the template device")
        agent.stop()
    return agent.data_dir
