"""Bad input to the converters: each gets a precise error that names the problem, never a crash."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.semi_supervised import LabelSpreading

from converters import (
    ConversionError,
    ModelFileError,
    ParityError,
    SampleDataError,
    UnsupportedModelError,
)
from converters.api import convert, convert_one, load_model_path
from converters.precision import Tolerance


@pytest.fixture(scope="module")
def wine() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_wine(return_X_y=True)
    return X, y


@pytest.mark.parametrize(("model", "named"), [
    (KMeans(n_clusters=3, n_init=1, random_state=0), "KMeans"),
    (LabelSpreading(), "LabelSpreading"),
    ({"weights": [1, 2]}, "dict"),
])
def test_unsupported_models_are_named(model: Any, named: str,
                                      wine: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = wine
    if hasattr(model, "fit"):
        model.fit(X, y)
    try:  # refused up front (not a model) or when its artifact is made (no converter)
        (outcome,) = convert(model, X, name="bad")
        error = outcome.error
    except UnsupportedModelError as exc:
        error = exc
    assert isinstance(error, UnsupportedModelError)
    assert named in str(error) and "Supported:" in str(error)


@pytest.mark.parametrize("suffix", [".joblib", ".keras", ".onnx", ".tflite", ".pt", ".pt2"])
def test_corrupt_files_are_refused_with_the_path(suffix: str, tmp_path: Path) -> None:
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"\x00\x01 this is not a model \xff" * 10)
    with pytest.raises(ModelFileError) as info:
        load_model_path(path)
    assert str(path) in str(info.value)


def test_unknown_extension_and_empty_files(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ModelFileError, match="unknown model file extension '.bin'"):
        load_model_path(tmp_path / "model.bin")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        load_model_path(tmp_path / "empty.onnx")
    with pytest.raises(ModelFileError, match="no such file"):
        load_model_path(tmp_path / "missing.keras")
    (tmp_path / "dir").mkdir()
    with pytest.raises(ModelFileError, match="not a SavedModel"):
        load_model_path(tmp_path / "dir")


def test_wrong_sample_shapes_are_refused(wine: tuple[np.ndarray, np.ndarray],
                                         keras_models: dict[str, Any],
                                         torch_models: dict[str, Any]) -> None:
    X, y = wine
    with pytest.raises(SampleDataError, match="12 columns but the model expects 13"):
        convert(LogisticRegression(max_iter=5000).fit(X, y), X[:, :12], name="x")
    with pytest.raises(SampleDataError, match="63 columns but the model expects 64"):
        convert(keras_models["cnn"], np.zeros((5, 63)), name="x")
    with pytest.raises(SampleDataError, match=r"rows of shape \(8, 8\).*8x8x1"):
        convert(keras_models["cnn"], np.zeros((5, 8, 8)), name="x")
    with pytest.raises(SampleDataError, match="labels has 4 entries but the sample has 5 rows"):
        convert(keras_models["mlp"], np.zeros((5, 64)), labels=np.zeros(4), name="x")
    with pytest.raises(SampleDataError, match="cannot run on sample rows of shape 63"):
        convert_one(torch_models["mlp"], np.zeros((5, 63)), name="x")


def test_a_quantized_model_that_breaks_parity_is_refused_with_figures(
        digits: tuple[np.ndarray, np.ndarray]) -> None:
    """Full int8 uses one input scale for all features: a raw, huge extra column (weight 0)
    squeezes the real features to zero. float32 is fine; int8-static is refused with figures."""
    keras = pytest.importorskip("keras")
    X, y = digits
    lr = LogisticRegression(max_iter=2000).fit(X, y)
    raw = np.hstack([X, np.linspace(0, 5000, len(X), dtype=np.float32)[:, None]])
    model = keras.Sequential([keras.Input((65,)), keras.layers.Dense(10, activation="softmax")])
    model.layers[0].set_weights([np.vstack([lr.coef_.T, np.zeros((1, 10))]).astype(np.float32),
                                 lr.intercept_.astype(np.float32)])
    outcomes = convert(model, raw[:300], name="unscaled", formats=("tflite",),
                       precisions=("float32", "int8-static"))
    assert outcomes[0].error is None
    error = outcomes[1].error
    assert isinstance(error, ParityError), error
    assert "tflite int8-static" in str(error) and "max_abs_diff=" in str(error)
    figures = error.figures()
    assert figures["n"] == 300 and figures["label_agreement"] < 0.95
    assert figures["tolerance"] == 0.1 and figures["min_label_agreement"] == 0.95
    # The user can loosen the tolerance deliberately, and then gets the artifact.
    loose = convert(model, raw[:300], name="unscaled", formats=("tflite",),
                    precisions=("int8-static",),
                    tolerances={"int8-static": Tolerance(1.0, 0.0)})
    assert loose[0].result is not None
    assert loose[0].result.manifest.parity["label_agreement"] < 0.95


def test_user_tolerance_is_enforced(wine: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = wine
    model = LogisticRegression(max_iter=5000).fit(X, y)
    with pytest.raises(ParityError, match=r"onnx float32.*tolerance 0\)"):
        convert_one(model, X, name="strict", tolerances={"*": Tolerance(0.0)})


def test_missing_framework_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    (tmp_path / "m.keras").write_bytes(b"PK")
    monkeypatch.setitem(__import__("sys").modules, "tensorflow", None)
    with pytest.raises(ConversionError, match=r"pip install '\.\[keras\]'"):
        load_model_path(tmp_path / "m.keras")
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    (tmp_path / "m.pt").write_bytes(b"PK")
    with pytest.raises(ConversionError, match=r"pip install '\.\[torch\]'"):
        load_model_path(tmp_path / "m.pt")


def test_missing_side_environment_says_how_to_build_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        torch_models: dict[str, Any], digits: tuple[np.ndarray, np.ndarray]) -> None:
    monkeypatch.setenv("EDGEWISE_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("EDGEWISE_ONNX2TF_PYTHON", raising=False)
    X, _ = digits
    (outcome,) = convert(torch_models["mlp"], X[:50], name="x", formats=("tflite",))
    assert outcome.result is None
    assert "python -m converters.envs setup onnx2tf" in str(outcome.error)
    assert "EDGEWISE_ONNX2TF_PYTHON" in str(outcome.error)
    monkeypatch.setenv("EDGEWISE_ONNX2TF_PYTHON", str(tmp_path / "no-python"))
    (outcome,) = convert(torch_models["mlp"], X[:50], name="x", formats=("tflite",))
    assert "is not a file" in str(outcome.error)


def test_sklearn_onnx_export_cannot_go_to_tflite(wine: tuple[np.ndarray, np.ndarray],
                                                 tmp_path: Path) -> None:
    """A skl2onnx file (label + probabilities, ai.onnx.ml ops) is refused with the advice."""
    X, y = wine
    result = convert_one(LogisticRegression(max_iter=5000).fit(X, y), X, name="lr")
    path = tmp_path / "lr.onnx"
    path.write_bytes(result.artifact)
    with pytest.raises(UnsupportedModelError, match="convert the original estimator"):
        convert(path, X, name="lr", formats=("tflite",))


def test_hummingbird_failures_are_refused_not_shipped(wine: tuple[np.ndarray, np.ndarray]) -> None:
    """hummingbird 0.4.12 gets scikit-learn >= 1.8's LogisticRegression wrong; parity says no."""
    from tests.integration.converters.conftest import require_env

    require_env("hummingbird")
    require_env("onnx2tf")
    X, y = wine
    (outcome,) = convert(LogisticRegression(max_iter=5000).fit(X, y), X, name="lr",
                         formats=("tflite",))
    assert outcome.result is None and isinstance(outcome.error, ParityError)


def test_pickled_models_warn(wine: tuple[np.ndarray, np.ndarray], tmp_path: Path,
                             caplog: pytest.LogCaptureFixture) -> None:
    X, y = wine
    joblib.dump(LogisticRegression(max_iter=5000).fit(X, y), tmp_path / "m.joblib")
    with caplog.at_level("WARNING", logger="edgewise.converters"):
        (outcome,) = convert(tmp_path / "m.joblib", X, name="m")
    assert outcome.result is not None
    assert "unpickling runs arbitrary code" in caplog.text
    assert os.path.exists(tmp_path / "m.joblib")
