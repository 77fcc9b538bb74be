"""The conversion matrix: every common model type to ONNX and TFLite, each artifact checked.

For every case the converter must keep parity with the source on the sample (the figures are in
the manifest and within tolerance), and the artifact must load and pass its smoke tests in the
agent's own runtime (onnxruntime, or the TFLite interpreter), which is what a device will do.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_wine
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from converters.api import Outcome, convert
from converters.errors import ParityError
from converters.precision import DEFAULT_TOLERANCES, FORMAT_PRECISIONS
from edge_agent.runtime import load_runtime, prepare_features, smoke_test
from edgewise_wire.manifest import Manifest
from tests.integration.converters.conftest import require_env


def refused_by_parity(outcome: Outcome) -> bool:
    """An ONNX int8 artifact made by onnxruntime's quantizer may miss the int8 tolerance on a
    small network (whether it does moves with the quantizer and exporter releases): then it
    must be refused by the parity check, with the figures that missed, never shipped."""
    if outcome.error is None:
        return False
    assert outcome.format == "onnx" and outcome.precision.startswith("int8"), outcome.error
    assert isinstance(outcome.error, ParityError), outcome.error
    tolerance = DEFAULT_TOLERANCES[outcome.precision]
    assert f"tolerance {tolerance.max_abs_diff}" in str(outcome.error)
    return True


def check_outcome(outcome: Outcome, tmp_path: Path, sample: np.ndarray) -> Manifest:
    """The artifact is verified, described, and runs in the agent's runtime."""
    assert outcome.error is None, f"{outcome.format} {outcome.precision}: {outcome.error}"
    assert outcome.result is not None
    result = outcome.result
    m = result.manifest
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    assert m.format == outcome.format and m.precision == outcome.precision
    assert m.artifact.sha256 == hashlib.sha256(result.artifact).hexdigest()
    assert m.artifact.size == len(result.artifact)
    tolerance = DEFAULT_TOLERANCES[outcome.precision]
    assert m.parity["n"] == sample.shape[0]
    assert m.parity["max_abs_diff"] <= tolerance.max_abs_diff
    assert m.parity["label_agreement"] >= tolerance.min_label_agreement
    assert m.verified_runtimes, "no runtime recorded"
    if m.format == "onnx":
        assert m.verified_runtimes[0].startswith("onnxruntime==") and m.opset
    else:
        assert m.verified_runtimes[0].startswith("ai-edge-litert==") and m.tflite_ops
    assert m.inputs[0].shape == (None, m.n_features) and m.n_features == sample.shape[1]
    assert m.source["framework"] and m.source["converter"]
    assert m.reference_profile["n"] == sample.shape[0]
    assert result.report["latency_us"] > 0
    # The device's view: load by the manifest, pass the smoke tests, serve rows.
    path = tmp_path / f"model.{m.format}"
    path.write_bytes(result.artifact)
    runtime = load_runtime(path, m)
    smoke_test(runtime)
    out = runtime.run(prepare_features(sample[:7], m))
    assert out.labels.shape == (7,)
    if m.task == "classification":
        assert set(out.labels.tolist()) <= set(m.class_labels or ())
    return m


def run(model: Any, sample: Any, formats: tuple[str, ...], precisions: tuple[str, ...],
        **kwargs: Any) -> list[Outcome]:
    outcomes = convert(model, sample, name="case", formats=formats, precisions=precisions,
                       **kwargs)
    assert [(o.format, o.precision) for o in outcomes] == [
        (f, p) for f in formats for p in precisions if p in FORMAT_PRECISIONS[f]]
    return outcomes


# -- scikit-learn -------------------------------------------------------------------------------

SKLEARN = {
    "logreg": (lambda: LogisticRegression(max_iter=5000), ("onnx",)),
    "forest": (lambda: RandomForestClassifier(n_estimators=20, random_state=0), ("onnx",)),
    "gboost": (lambda: GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0),
               ("onnx", "tflite")),
    "mlp": (lambda: MLPClassifier(hidden_layer_sizes=(16,), max_iter=1000, random_state=0),
            ("onnx",)),
    "scaler-mlp": (lambda: make_pipeline(StandardScaler(), MLPClassifier(
        hidden_layer_sizes=(16,), max_iter=1000, random_state=0)), ("onnx", "tflite")),
}


@pytest.mark.parametrize("kind", sorted(SKLEARN))
def test_sklearn_classifiers(kind: str, tmp_path: Path) -> None:
    make, formats = SKLEARN[kind]
    X, y = load_wine(return_X_y=True)
    if "tflite" in formats:
        require_env("hummingbird")
        require_env("onnx2tf")
    model = make().fit(X, y)
    for outcome in run(model, X, formats, ("float32",), labels=y):
        m = check_outcome(outcome, tmp_path, X)
        assert m.source["framework"] == "sklearn"
        assert m.parity["source_accuracy"] == m.parity["artifact_accuracy"]
        assert m.class_labels == (0, 1, 2)


def test_sklearn_mlp_quantizes_to_int8(tmp_path: Path) -> None:
    X, y = load_wine(return_X_y=True)
    model = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,),
                                                          max_iter=1000, random_state=0)).fit(X, y)
    float32, int8 = run(model, X, ("onnx",), ("float32", "int8-dynamic"), labels=y)
    check_outcome(float32, tmp_path, X)
    m = check_outcome(int8, tmp_path, X)
    assert m.source["quantizer"] == "onnxruntime.quantization"
    assert int8.result is not None and float32.result is not None


@pytest.mark.parametrize("kind", ["ridge", "forest"])
def test_sklearn_regressors(kind: str, tmp_path: Path) -> None:
    require_env("hummingbird")
    require_env("onnx2tf")
    from sklearn.ensemble import RandomForestRegressor

    X, y = load_diabetes(return_X_y=True)
    y = y / 100.0  # targets of order 1, so float32 rounding stays inside the default tolerance
    model = (Ridge() if kind == "ridge" else
             RandomForestRegressor(n_estimators=10, max_depth=6, random_state=0)).fit(X, y)
    for outcome in run(model, X, ("onnx", "tflite"), ("float32",), labels=y):
        m = check_outcome(outcome, tmp_path, X)
        assert m.task == "regression" and m.score_output is None
        assert m.parity["artifact_mae"] == pytest.approx(m.parity["source_mae"], abs=1e-4)


# -- Keras --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_keras_models_in_every_precision(kind: str, keras_models: dict[str, Any],
                                         digits: tuple[np.ndarray, np.ndarray],
                                         tmp_path: Path) -> None:
    X, y = digits
    sample = X[:300] if kind == "mlp" else X[:300].reshape(-1, 8, 8, 1)  # the model's own shape
    precisions = ("float32", "float16", "int8-dynamic", "int8-static")
    outcomes = run(keras_models[kind], sample, ("onnx", "tflite"), precisions, labels=y[:300])
    for outcome in outcomes:
        if refused_by_parity(outcome):
            continue
        m = check_outcome(outcome, tmp_path, X[:300])
        assert m.source["framework"] == "tensorflow"
        assert m.class_labels == tuple(range(10))
        assert m.parity["artifact_accuracy"] > 0.8
    sizes = {(o.format, o.precision): len(o.result.artifact) for o in outcomes if o.result}
    assert sizes[("tflite", "int8-static")] < sizes[("tflite", "float32")]
    by_key = {(o.format, o.precision): o for o in outcomes}
    static = by_key[("tflite", "int8-static")].result
    assert static is not None and static.manifest.inputs[0].dtype == "int8"  # full integer
    if kind == "cnn":
        assert by_key[("tflite", "float32")].result.manifest.source["input_shape"] == [8, 8, 1]


def test_keras_file_and_saved_model(keras_models: dict[str, Any],
                                    digits: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    X, y = digits
    model = keras_models["cnn"]
    model.save(tmp_path / "cnn.keras")
    model.export(tmp_path / "saved", format="tf_saved_model", verbose=False)
    for path in (tmp_path / "cnn.keras", tmp_path / "saved"):
        (outcome,) = run(path, X[:100], ("tflite",), ("float32",), labels=y[:100])
        check_outcome(outcome, tmp_path, X[:100])


def test_tflite_runtime_verification(keras_models: dict[str, Any],
                                     digits: tuple[np.ndarray, np.ndarray],
                                     tmp_path: Path) -> None:
    """float32 runs under tflite-runtime 2.14 too; dynamic-range int8 does not, and says why."""
    require_env("tflite-runtime")
    X, _ = digits
    float32, dynamic = run(keras_models["mlp"], X[:100], ("tflite",),
                           ("float32", "int8-dynamic"),
                           tflite_runtimes=("ai-edge-litert", "tflite-runtime"))
    m = check_outcome(float32, tmp_path, X[:100])
    assert [r.split("==")[0] for r in m.verified_runtimes] == ["ai-edge-litert",
                                                               "tflite-runtime"]
    assert dynamic.result is None and dynamic.error is not None
    assert "tflite-runtime 2.14 cannot run this artifact" in str(dynamic.error)
    assert "FULLY_CONNECTED" in str(dynamic.error)


# -- PyTorch and ONNX files ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_torch_modules(kind: str, torch_models: dict[str, Any],
                       digits: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    require_env("onnx2tf")
    X, y = digits
    sample = X[:300] if kind == "mlp" else X[:300].reshape(-1, 1, 8, 8)
    outcomes = run(torch_models[kind], sample, ("onnx", "tflite"), ("float32", "int8-dynamic"),
                   labels=y[:300])
    for outcome in outcomes:
        if refused_by_parity(outcome):
            continue
        m = check_outcome(outcome, tmp_path, X[:300])
        assert m.source["framework"] == "torch"
        assert m.parity["scores_compared"] == "softmax"  # the modules emit logits
        assert m.parity["artifact_accuracy"] > 0.8


def test_torchscript_file(torch_models: dict[str, Any], digits: tuple[np.ndarray, np.ndarray],
                          tmp_path: Path) -> None:
    import torch

    X, y = digits
    torch.jit.trace(torch_models["cnn"], torch.zeros(1, 1, 8, 8)).save(str(tmp_path / "cnn.pt"))
    (outcome,) = run(tmp_path / "cnn.pt", X[:100].reshape(-1, 1, 8, 8), ("onnx",), ("float32",))
    check_outcome(outcome, tmp_path, X[:100])


def test_torch_export_program_file(torch_models: dict[str, Any],
                                   digits: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    import torch

    X, _ = digits
    program = torch.export.export(torch_models["mlp"], (torch.zeros(2, 64),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(tmp_path / "mlp.pt2"))
    (outcome,) = run(tmp_path / "mlp.pt2", X[:100], ("onnx",), ("float32",))
    check_outcome(outcome, tmp_path, X[:100])


def test_onnx_network_file_to_tflite(torch_models: dict[str, Any],
                                     digits: tuple[np.ndarray, np.ndarray],
                                     tmp_path: Path) -> None:
    """An ONNX graph from elsewhere (NCHW image input) → TFLite through onnx2tf, and → ONNX."""
    require_env("onnx2tf")
    import torch

    X, y = digits
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch_models["cnn"], (torch.zeros(1, 1, 8, 8),), buffer,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}}, dynamo=False)
    path = tmp_path / "cnn.onnx"
    path.write_bytes(buffer.getvalue())
    outcomes = run(path, X[:200], ("onnx", "tflite"), ("float32", "float16"), labels=y[:200])
    for outcome in outcomes:
        m = check_outcome(outcome, tmp_path, X[:200])
        assert m.source["framework"] == "onnx" and m.source["input_shape"] == [1, 8, 8]
    assert outcomes[1].result is not None and \
        outcomes[1].result.manifest.source["converter"] == "onnx2tf"


def test_tflite_file_passes_through(keras_models: dict[str, Any],
                                    digits: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    X, y = digits
    (made,) = run(keras_models["mlp"], X[:100], ("tflite",), ("int8-static",))
    assert made.result is not None
    path = tmp_path / "given.tflite"
    path.write_bytes(made.result.artifact)
    (outcome,) = run(path, X[:100], ("tflite",), ("int8-static",), labels=y[:100])
    m = check_outcome(outcome, tmp_path, X[:100])
    assert outcome.result is not None and outcome.result.artifact == made.result.artifact
    assert m.source["converter"] == "pass-through" and m.parity["max_abs_diff"] == 0.0
