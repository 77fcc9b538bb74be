"""Inference runtimes behind one small interface.

The agent loads an artifact in the runtime its manifest names and validates inputs against the
manifest's schema before they reach the runtime, so a wrong shape is a clear error, not a
runtime crash deep inside onnxruntime.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_agent.health.sources import process_rss_bytes
from edge_agent.malloc_tuning import release_free_memory
from edgewise_wire.manifest import Manifest
from edgewise_wire.records import InputSchema, RecordError, is_records, validate_records


class RuntimeLoadError(Exception):
    """The artifact could not be loaded or failed its smoke test; it must not be activated."""


class InvalidInput(ValueError):
    """Input that does not match the model's schema; the message says what was expected."""


@dataclass(frozen=True)
class RuntimeOutput:
    labels: np.ndarray  # predicted labels (classification) or values (regression), one per row
    scores: np.ndarray | None  # class probabilities (rows x classes), when the model has them


@dataclass(frozen=True)
class RecordInput:
    """Validated records of a tabular model: one named input per field, and their numeric view
    (a category as its index, a text as its word count) for drift monitoring."""

    feed: dict[str, np.ndarray]
    monitor: np.ndarray  # rows x fields, float64

    def __len__(self) -> int:
        return int(self.monitor.shape[0])


Features = np.ndarray | RecordInput


class InferenceRuntime(Protocol):
    manifest: Manifest

    def run(self, features: Features) -> RuntimeOutput: ...


def monitor_rows(features: Features) -> np.ndarray:
    """What the drift monitor sees of an input: the float rows, or the records' numeric view."""
    return features.monitor if isinstance(features, RecordInput) else features


class OnnxRuntimeModel:
    """An ONNX artifact in onnxruntime, one intra-op thread (a Pi has few cores to share)."""

    # resident memory the process gained while loading it (set by load_runtime)
    session_bytes: int | None = None

    def __init__(self, path: Path, manifest: Manifest, *, threads: int = 1) -> None:
        import onnxruntime as ort  # imported here: a TFLite-only device need not load it

        self.manifest = manifest
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise RuntimeLoadError(f"onnxruntime cannot load {path.name}: {exc}") from exc
        self._input_name = manifest.inputs[0].name
        session_inputs = [i.name for i in self._session.get_inputs()]
        if self._input_name not in session_inputs:
            raise RuntimeLoadError(
                f"manifest input {self._input_name!r} is not in the model's inputs {session_inputs}")
        self._output_names = [manifest.label_output]
        if manifest.score_output:
            self._output_names.append(manifest.score_output)

    def run(self, features: Features) -> RuntimeOutput:
        feed = features.feed if isinstance(features, RecordInput) else \
            {self._input_name: features}
        outputs = self._session.run(self._output_names, feed)
        labels = np.asarray(outputs[0])
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        scores = np.asarray(outputs[1]) if len(outputs) > 1 else None
        return RuntimeOutput(labels=labels, scores=scores)


def prepare_features(features: object, manifest: Manifest) -> Features:
    """Validate and shape input rows as the model expects: a float32 2-D batch, or for a model
    with an input schema, records of named fields (edgewise_wire/records.py)."""
    if manifest.input_schema is not None:
        return prepare_records(features, manifest.input_schema)
    if is_records(features):
        raise InvalidInput(f"model {manifest.model}:{manifest.version} takes rows of "
                           f"{manifest.n_features} numbers, not records of named fields")
    try:
        array = np.asarray(features, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"features must be numbers: {exc}") from None
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise InvalidInput(f"features must be one row or a 2-D batch, got {array.ndim} dimensions")
    expected = manifest.n_features
    if array.shape[1] != expected:
        raise InvalidInput(
            f"model {manifest.model}:{manifest.version} expects {expected} features per row, "
            f"got {array.shape[1]}")
    if array.shape[0] == 0:
        raise InvalidInput("features hold no rows")
    if not np.isfinite(array).all():
        raise InvalidInput("features contain NaN or infinity")
    return array


_NUMPY_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64,
                 "string": object}


def prepare_records(features: object, schema: InputSchema) -> RecordInput:
    """Records checked against ``schema`` and laid out as the artifact's named inputs."""
    try:
        batch = validate_records(features, schema)
    except (RecordError, ValueError) as exc:
        raise InvalidInput(str(exc)) from None
    feed = {}
    for field in schema.fields:
        values = batch.columns[field.name]
        if field.kind == "number":
            values = [np.nan if v is None else v for v in values]
        feed[field.name] = np.array(values, dtype=_NUMPY_DTYPES[field.dtype]).reshape(-1, 1)
    return RecordInput(feed, np.array(batch.monitor_rows(), dtype=np.float64))


def _tflite_interpreter_class() -> Any:
    """ai-edge-litert first (runs every current op version, works with numpy 2), then the
    frozen tflite-runtime 2.14 (needs numpy < 2, misses newer quantized op versions)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    except ImportError:
        raise RuntimeLoadError(
            "no TFLite interpreter is installed: pip install ai-edge-litert "
            "(or tflite-runtime on numpy < 2)") from None


class TfliteModel:
    """A TFLite artifact in the LiteRT interpreter.

    Quantized inputs and outputs are converted with the tensors' own scale and zero point, so
    callers always pass and get float values. A classifier whose manifest names the same
    tensor as label and score output gets its labels by arg-max over ``class_labels``: TFLite
    graphs converted from Keras or PyTorch emit probabilities only.
    """

    session_bytes: int | None = None  # as OnnxRuntimeModel's

    def __init__(self, path: Path, manifest: Manifest, *, threads: int = 1) -> None:
        interpreter_class = _tflite_interpreter_class()
        self.manifest = manifest
        try:
            self._interpreter = interpreter_class(model_path=str(path), num_threads=threads)
            self._interpreter.allocate_tensors()
        except Exception as exc:
            raise RuntimeLoadError(f"the TFLite interpreter cannot load {path.name}: {exc}") from exc
        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1:
            raise RuntimeLoadError(f"TFLite model has {len(inputs)} inputs; Edgewise serves one")
        self._input = inputs[0]
        outputs = {d["name"]: d for d in self._interpreter.get_output_details()}
        self._label = self._output(outputs, manifest.label_output)
        self._score = self._output(outputs, manifest.score_output) if manifest.score_output else None
        self._batch = int(self._input["shape"][0])

    @staticmethod
    def _output(outputs: dict[str, Any], name: str) -> Any:
        if name in outputs:
            return outputs[name]
        if len(outputs) == 1:  # a single output: its internal name need not match
            return next(iter(outputs.values()))
        raise RuntimeLoadError(f"manifest output {name!r} is not in the model's outputs {sorted(outputs)}")

    def run(self, features: Features) -> RuntimeOutput:
        if isinstance(features, RecordInput):
            raise InvalidInput("a TFLite model takes one float matrix, not records")
        rows = features.shape[0]
        if rows != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], [rows, *features.shape[1:]])
            self._interpreter.allocate_tensors()
            self._batch = rows
        self._interpreter.set_tensor(self._input["index"], _quantize(features, self._input))
        self._interpreter.invoke()
        raw = _dequantize(self._interpreter.get_tensor(self._label["index"]), self._label)
        scores = None
        if self._score is not None:
            scores = _dequantize(self._interpreter.get_tensor(self._score["index"]), self._score)
        if self.manifest.task == "classification" and self._score is not None and \
                self._score["index"] == self._label["index"]:
            labels = np.asarray(self.manifest.class_labels or range(raw.shape[1]))[raw.argmax(axis=1)]
        else:
            labels = raw[:, 0] if raw.ndim == 2 and raw.shape[1] == 1 else raw
        return RuntimeOutput(labels=np.asarray(labels), scores=scores)


def _quantize(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return values.astype(dtype, copy=False)
    scale, zero_point = detail["quantization"]
    if not scale:
        return values.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.issubdtype(values.dtype, np.floating) or not scale:
        return np.array(values)  # a copy: the interpreter reuses its buffers
    return (values.astype(np.float32) - zero_point) * scale


def load_runtime(path: Path, manifest: Manifest) -> InferenceRuntime:
    """Load ``path`` in the runtime for the manifest's format. The resident memory the process
    gained meanwhile is kept as the runtime's ``session_bytes``: a model version's memory cost
    in its health windows (approximate: another thread allocating at the same time counts too,
    and memory the allocator reuses from an unloaded model does not)."""
    if manifest.format == "onnx":
        # the library itself is not the model's cost: loaded before the measurement starts
        import onnxruntime  # noqa: F401
    elif manifest.format == "tflite":
        _tflite_interpreter_class()
    release_free_memory()  # memory freed earlier (an unloaded model) must not be reused unseen
    before = process_rss_bytes()
    runtime: OnnxRuntimeModel | TfliteModel
    if manifest.format == "onnx":
        runtime = OnnxRuntimeModel(path, manifest)
    elif manifest.format == "tflite":
        if manifest.input_schema is not None:
            raise RuntimeLoadError("a TFLite artifact with an input schema: records are served "
                                   "by ONNX artifacts only")
        runtime = TfliteModel(path, manifest)
    else:
        raise RuntimeLoadError(f"format {manifest.format!r} is not supported by this agent")
    after = process_rss_bytes()
    if before is not None and after is not None and after > before:
        # nothing gained is no measurement (memory reused after all): left out, not 0
        runtime.session_bytes = after - before
    return runtime


def smoke_test(runtime: InferenceRuntime) -> None:
    """Run the manifest's smoke samples and compare with the outputs recorded at conversion."""
    manifest = runtime.manifest
    tolerance = manifest.smoke_tolerance
    for i, case in enumerate(manifest.smoke_tests):
        try:
            out = runtime.run(prepare_features(case.inputs, manifest))
        except Exception as exc:
            raise RuntimeLoadError(f"smoke test {i} failed to run: {exc}") from exc
        got = out.labels.tolist()
        expected = list(case.expected_labels)
        if manifest.task == "classification":
            mismatches = sum(1 for g, e in zip(got, expected, strict=True) if g != e)
            if mismatches:
                raise RuntimeLoadError(
                    f"smoke test {i}: {mismatches} of {len(expected)} labels differ from the "
                    f"converter's (got {got[:5]}, expected {expected[:5]})")
        else:
            diff = float(np.max(np.abs(np.asarray(got, float) - np.asarray(expected, float))))
            if diff > tolerance:
                raise RuntimeLoadError(
                    f"smoke test {i}: predictions differ by {diff:.3g} > tolerance {tolerance:.3g}")
        if case.expected_scores is not None and out.scores is not None:
            diff = float(np.max(np.abs(out.scores - np.asarray(case.expected_scores))))
            if diff > tolerance:
                raise RuntimeLoadError(
                    f"smoke test {i}: scores differ by {diff:.3g} > tolerance {tolerance:.3g}")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
