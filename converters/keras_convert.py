"""Keras / TensorFlow models → TFLite (TFLiteConverter) and ONNX (tf2onnx).

Inputs: a Keras model object, a ``.keras`` / ``.h5`` file, or a SavedModel directory. Every path
goes through one ``tf.function`` that takes flat float rows ``[batch, features]`` and reshapes
them to the model's own input shape, so a CNN on 8x8x1 images becomes an artifact that takes
64 values per row like every other Edgewise model.

TFLite precisions: float32, float16 (weights), int8-dynamic (dynamic-range: int8 weights, float
activations) and int8-static (full integer: int8 weights, activations, input and output,
calibrated on the sample). ONNX comes from tf2onnx (the path ``keras.Model.export(format="onnx")``
uses) and can be quantized further by converters.quantize.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Iterator, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from converters.artifact import Candidate
from converters.deps import require
from converters.errors import ConversionError, ModelFileError, UnsupportedModelError
from converters.onnx_graph import INPUT, load_model, onnx_bytes, with_label_head
from converters.source import (
    SUPPORTED_NN,
    Source,
    default_class_labels,
    infer_task,
    outputs_to_predictions,
)

log = logging.getLogger("edgewise.converters")

KERAS_SUFFIXES = (".keras", ".h5")
CALIBRATION_ROWS = 200


def _tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return require("tensorflow", "keras")


def is_keras_model(obj: Any) -> bool:
    module = type(obj).__module__
    return module.startswith(("keras", "tf_keras", "tensorflow")) and callable(obj)


def is_saved_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "saved_model.pb").is_file()


def load_keras_file(path: Path) -> Any:
    """A Keras model from ``.keras``/``.h5``, or the serving signature of a SavedModel dir."""
    tf = _tf()
    if is_saved_model_dir(path):
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            raise ModelFileError(path, f"not a loadable SavedModel ({type(exc).__name__}: "
                                       f"{exc})") from exc
        signatures = getattr(loaded, "signatures", {})
        if "serving_default" not in signatures:
            raise ModelFileError(path, f"SavedModel has no 'serving_default' signature "
                                       f"(has {sorted(signatures)})")
        return _SavedModel(loaded, signatures["serving_default"])
    keras = require("keras")
    try:
        return keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # corrupt zip, wrong format, missing custom objects...
        raise ModelFileError(path, f"not a loadable Keras model ({type(exc).__name__}: "
                                   f"{str(exc).strip().splitlines()[0][:300]})") from exc


class _SavedModel:
    """A SavedModel's serving signature, with one input and one output."""

    def __init__(self, loaded: Any, signature: Any) -> None:
        self.loaded = loaded
        self.signature = signature
        inputs = [t for t in signature.structured_input_signature[1].values()]
        outputs = list(signature.structured_outputs)
        if len(inputs) != 1 or len(outputs) != 1:
            raise UnsupportedModelError(f"a SavedModel with {len(inputs)} inputs and "
                                        f"{len(outputs)} outputs", supported=SUPPORTED_NN)
        self.input_key = next(iter(signature.structured_input_signature[1]))
        self.output_key = outputs[0]
        self.input_shape = tuple(inputs[0].shape)

    def __call__(self, x: Any) -> Any:
        return self.signature(**{self.input_key: x})[self.output_key]


def keras_source(model: Any, sample: np.ndarray | None, *, task: str | None,
                 labels: np.ndarray | None, class_labels: Sequence[Any] | None,
                 description: str = "") -> tuple[Source, Any]:
    """(Source, flat tf.function) for a Keras model or a loaded SavedModel."""
    tf = _tf()
    if isinstance(model, _SavedModel):
        shape = model.input_shape
        kind_text = description or "SavedModel"
    else:
        inputs = getattr(model, "inputs", None) or []
        outputs = getattr(model, "outputs", None) or []
        if len(inputs) != 1 or len(outputs) != 1:
            raise UnsupportedModelError(f"{type(model).__name__} with {len(inputs)} inputs and "
                                        f"{len(outputs)} outputs", supported=SUPPORTED_NN)
        shape = tuple(inputs[0].shape)
        kind_text = description or f"keras {type(model).__name__}"
    row_shape = tuple(shape[1:])
    if not row_shape or any(d is None for d in row_shape):
        raise UnsupportedModelError(kind_text, f"input shape {shape} must be fixed apart from "
                                    "the batch", supported=SUPPORTED_NN)
    row_shape = tuple(int(d) for d in row_shape)
    width = int(np.prod(row_shape))

    @tf.function(input_signature=[tf.TensorSpec([None, width], tf.float32, name=INPUT)])
    def flat(x: Any) -> Any:
        return model(tf.reshape(x, [-1, *row_shape]))

    probe = np.zeros((1, width), np.float32) if sample is None else sample[:1].astype(np.float32)
    n_out = int(np.asarray(flat(probe)).reshape(1, -1).shape[1])
    resolved = infer_task(n_out, task)
    classes = default_class_labels(n_out, labels, class_labels) \
        if resolved == "classification" else None

    def predict(rows: np.ndarray) -> Any:
        out = np.asarray(flat(rows.astype(np.float32)))
        return outputs_to_predictions(out, resolved, classes)

    source = Source(kind="keras", framework="tensorflow", framework_version=tf.__version__,
                    description=kind_text, task=resolved, row_shape=row_shape,
                    class_labels=classes, predict=predict, model=model,
                    details={"keras_version": _version("keras")})
    return source, flat


def tflite_converter(source: Source, flat: Any, directory: Path) -> Any:
    """A TFLiteConverter over flat rows.

    Keras models: a wrapper model (flat Input → Reshape → the model), through
    ``from_keras_model``. SavedModels: the flat function saved with the loaded variables, through
    ``from_saved_model``. (Converting the concrete function directly leaves Keras 3 variables as
    READ_VARIABLE ops without values: the parity check caught that.)
    """
    tf = _tf()
    model = source.model
    if isinstance(model, _SavedModel):
        module = tf.Module()
        module.loaded = model.loaded
        module.serve = flat
        target = directory / "flat_saved_model"
        tf.saved_model.save(module, str(target),
                            signatures={"serving_default": flat.get_concrete_function()})
        return tf.lite.TFLiteConverter.from_saved_model(str(target))
    keras = require("keras")
    if len(source.row_shape) > 1:
        model = keras.Sequential([keras.Input((source.n_features,)),
                                  keras.layers.Reshape(source.row_shape), model])
    return tf.lite.TFLiteConverter.from_keras_model(model)


def to_tflite(source: Source, flat: Any, precision: str, sample: np.ndarray,
              directory: Path) -> Candidate:
    """TFLiteConverter over flat rows (see tflite_converter), in ``precision``."""
    tf = _tf()
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints "Saved artifact at ..."
        converter = tflite_converter(source, flat, directory)
    if precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8-dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8-static":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _calibration(sample)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif precision != "float32":
        raise ValueError(f"TFLiteConverter cannot produce precision {precision!r}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            data = bytes(converter.convert())
    except Exception as exc:
        raise ConversionError(f"TFLiteConverter failed ({precision}): "
                              f"{str(exc).strip().splitlines()[-1][:400]}") from exc
    return Candidate("tflite", precision, data,
                     {"converter": "tf.lite.TFLiteConverter", "converter_version": tf.__version__},
                     time.perf_counter() - started)


def to_onnx(source: Source, flat: Any, opset: int = 17) -> Candidate:
    """tf2onnx on the flat function; classifiers get the ``label`` head."""
    require("tensorflow", "keras")
    tf2onnx = require("tf2onnx", "keras")
    tf = _tf()
    started = time.perf_counter()
    try:
        model, _ = tf2onnx.convert.from_function(
            flat, input_signature=[tf.TensorSpec([None, source.n_features], tf.float32,
                                                 name=INPUT)], opset=opset)
    except Exception as exc:
        raise ConversionError(f"tf2onnx failed: {str(exc).strip().splitlines()[-1][:400]}") \
            from exc
    model = load_model(model.SerializeToString())
    inputs = [i.name for i in model.graph.input]
    if inputs != [INPUT]:  # tf2onnx appends ":0" to names in some versions
        from converters.onnx_graph import with_flat_input

        model = with_flat_input(model, (source.n_features,))
    model = with_label_head(model, source.task, source.class_labels)
    return Candidate("onnx", "float32", onnx_bytes(model),
                     {"converter": "tf2onnx", "converter_version": tf2onnx.__version__,
                      "opset": opset}, time.perf_counter() - started)


def _calibration(sample: np.ndarray) -> Iterator[list[np.ndarray]]:
    rows = sample[:CALIBRATION_ROWS].astype(np.float32)
    for i in range(rows.shape[0]):
        yield [rows[i:i + 1]]


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except Exception:
        return "unknown"
