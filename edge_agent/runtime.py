"""Inference runtimes behind one small interface.

The agent loads an artifact in the runtime its manifest names and validates inputs against the
manifest's schema before they reach the runtime, so a wrong shape is a clear error, not a
runtime crash deep inside onnxruntime.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_agent.protocol.manifest import Manifest


class RuntimeLoadError(Exception):
    """The artifact could not be loaded or failed its smoke test; it must not be activated."""


class InvalidInput(ValueError):
    """Input that does not match the model's schema; the message says what was expected."""


@dataclass(frozen=True)
class RuntimeOutput:
    labels: np.ndarray  # predicted labels (classification) or values (regression), one per row
    scores: np.ndarray | None  # class probabilities (rows x classes), when the model has them


class InferenceRuntime(Protocol):
    manifest: Manifest

    def run(self, features: np.ndarray) -> RuntimeOutput: ...


class OnnxRuntimeModel:
    """An ONNX artifact in onnxruntime, one intra-op thread (a Pi has few cores to share)."""

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

    def run(self, features: np.ndarray) -> RuntimeOutput:
        outputs = self._session.run(self._output_names, {self._input_name: features})
        labels = np.asarray(outputs[0])
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        scores = np.asarray(outputs[1]) if len(outputs) > 1 else None
        return RuntimeOutput(labels=labels, scores=scores)


def prepare_features(features: object, manifest: Manifest) -> np.ndarray:
    """Validate and shape input rows as the model's first input expects (float32, 2-D)."""
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


def load_runtime(path: Path, manifest: Manifest) -> InferenceRuntime:
    """Load ``path`` in the runtime for the manifest's format."""
    if manifest.format == "onnx":
        return OnnxRuntimeModel(path, manifest)
    raise RuntimeLoadError(f"format {manifest.format!r} is not supported by this agent yet")


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
