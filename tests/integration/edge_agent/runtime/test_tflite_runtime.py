"""The agent's TFLite runtime on real LiteRT, with float and fully int8-quantized models."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edge_agent.runtime import (
    InvalidInput,
    RuntimeLoadError,
    TfliteModel,
    load_runtime,
    prepare_features,
    smoke_test,
)
from edgewise_wire import ArtifactRef, Manifest, SmokeTest, TensorSpec


def _tensorflow():  # type: ignore[no-untyped-def]
    try:
        import tensorflow as tf
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("tensorflow is not installed; the dev extra installs it")
        pytest.skip("tensorflow is not installed")
    return tf


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    data = load_iris()
    x = ((data.data - data.data.mean(0)) / data.data.std(0)).astype(np.float32)
    return x, data.target


@pytest.fixture(scope="module")
def keras_model(iris: tuple[np.ndarray, np.ndarray]):  # type: ignore[no-untyped-def]
    tf = _tensorflow()
    tf.keras.utils.set_random_seed(0)
    x, y = iris
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(16, activation="relu"),
                                 tf.keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=40, verbose=0)
    return model


def _convert(keras_model, iris, int8: bool) -> bytes:  # type: ignore[no-untyped-def]
    tf = _tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    if int8:
        x, _ = iris

        def representative():  # type: ignore[no-untyped-def]
            for row in x[::3]:
                yield [row.reshape(1, 4)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def _manifest(artifact: bytes, output_name: str, expected: np.ndarray, rows: np.ndarray,
              tolerance: float) -> Manifest:
    return Manifest(
        model="iris-tfl", version=1, format="tflite", task="classification",
        inputs=(TensorSpec("input", "float32", (None, 4)),),
        outputs=(TensorSpec(output_name, "float32", (None, 3)),),
        label_output=output_name, score_output=output_name, class_labels=(0, 1, 2),
        feature_names=("a", "b", "c", "d"), artifact=ArtifactRef.describe(artifact),
        smoke_tests=(SmokeTest(rows.tolist(), expected.tolist()),), smoke_tolerance=tolerance)


@pytest.mark.parametrize("int8", [False, True], ids=["float32", "int8"])
def test_tflite_models_serve_labels_and_pass_their_smoke_test(
        keras_model, iris, tmp_path: Path, int8: bool) -> None:  # type: ignore[no-untyped-def]
    x, y = iris
    artifact = _convert(keras_model, iris, int8)
    path = tmp_path / "model.tflite"
    path.write_bytes(artifact)
    from ai_edge_litert.interpreter import Interpreter

    output_name = Interpreter(model_path=str(path)).get_output_details()[0]["name"]
    source = keras_model.predict(x, verbose=0)
    manifest = _manifest(artifact, output_name, source[:8].argmax(1), x[:8], 0.05)

    runtime = load_runtime(path, manifest)
    assert isinstance(runtime, TfliteModel)
    smoke_test(runtime)
    batch = runtime.run(prepare_features(x, manifest))  # resizes the interpreter to 150 rows
    assert batch.scores is not None and batch.scores.shape == (150, 3)
    assert batch.scores.dtype == np.float32  # int8 outputs come back dequantized
    agreement = float(np.mean(batch.labels == source.argmax(1)))
    assert agreement >= (0.95 if int8 else 1.0)
    assert float(np.mean(batch.labels == y)) > 0.85
    assert np.abs(batch.scores - source).max() < (0.1 if int8 else 1e-5)
    single = runtime.run(prepare_features(x[0], manifest))  # and back to one row
    assert single.labels.tolist() == [batch.labels[0]]
    with pytest.raises(InvalidInput, match="expects 4 features"):
        prepare_features(x[:, :3], manifest)


def test_a_smoke_test_mismatch_refuses_the_tflite_model(keras_model, iris, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    x, _ = iris
    artifact = _convert(keras_model, iris, int8=False)
    path = tmp_path / "model.tflite"
    path.write_bytes(artifact)
    from ai_edge_litert.interpreter import Interpreter

    output_name = Interpreter(model_path=str(path)).get_output_details()[0]["name"]
    wrong = (keras_model.predict(x[:8], verbose=0).argmax(1) + 1) % 3
    runtime = load_runtime(path, _manifest(artifact, output_name, wrong, x[:8], 0.05))
    with pytest.raises(RuntimeLoadError, match="labels differ"):
        smoke_test(runtime)
