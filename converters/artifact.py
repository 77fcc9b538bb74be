"""Verifying a converted artifact against its source and describing it in a manifest.

Whatever produced the bytes (skl2onnx, tf2onnx, torch.onnx, TFLiteConverter, onnx2tf, a
quantizer), this module loads them in the runtime a device will use, runs the user's sample,
measures parity with the source, refuses the artifact when parity is outside the tolerance, and
otherwise writes the manifest: schema, labels, parity and accuracy figures, smoke tests, the
reference profile, opsets or TFLite ops and the runtimes it was verified on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converters.deps import require
from converters.errors import ConversionError, ParityError
from converters.onnx_model import OnnxRunner, opset_versions, tensor_specs
from converters.parity import ParityFigures, classifier_parity, quality_figures, regressor_parity
from converters.precision import Tolerance, smoke_tolerance
from converters.profile import build_reference_profile
from converters.result import ConversionResult
from converters.source import Source, SourceOutput, outputs_to_predictions
from converters.tflite_check import TfliteRunner, litert_version, run_in_tflite_runtime, tflite_ops
from edgewise_wire.manifest import ArtifactRef, Manifest, SmokeTest, TensorSpec

log = logging.getLogger("edgewise.converters")

MAX_SMOKE_ROWS = 1000


@dataclass(frozen=True)
class Candidate:
    """Bytes a converter produced, before verification."""

    format: str  # "onnx" | "tflite"
    precision: str
    data: bytes
    converter: dict[str, Any] = field(default_factory=dict)  # converter name/version/options
    seconds: float = 0.0  # time the conversion itself took


@dataclass(frozen=True)
class Options:
    """What every verification needs besides the artifact."""

    name: str
    tolerance: Tolerance
    labels: np.ndarray | None = None  # true labels of the sample rows, for accuracy
    feature_names: Sequence[str] | None = None
    tflite_runtimes: Sequence[str] = ("ai-edge-litert",)
    smoke_count: int = 8
    profile_bins: int = 10


def verify(source: Source, sample: np.ndarray, source_out: SourceOutput, candidate: Candidate,
           options: Options) -> ConversionResult:
    """Load ``candidate`` as a device would, check parity on ``sample`` and build its manifest.

    ``sample`` is flat float64 rows; ``source_out`` the source's predictions on it. Raises
    ParityError with the figures (and the format and precision) when the artifact strays
    further than ``options.tolerance``; ConversionError when it cannot be loaded or run.
    """
    started = time.perf_counter()
    sample32 = sample.astype(np.float32)
    loaded: _OnnxArtifact | _TfliteArtifact
    if candidate.format == "onnx":
        loaded = _OnnxArtifact(candidate.data, source)
    elif candidate.format == "tflite":
        loaded = _TfliteArtifact(candidate.data, source)
    else:
        raise ValueError(f"unknown artifact format {candidate.format!r}")
    art_out = loaded.evaluate(sample32)
    where = f"{candidate.format} {candidate.precision}"
    figures = _parity(source.task, source_out, art_out, options.tolerance, where)
    runtimes = [loaded.runtime]
    if candidate.format == "tflite" and "tflite-runtime" in options.tflite_runtimes:
        raw, version = run_in_tflite_runtime(candidate.data, sample32)
        other = outputs_to_predictions(raw, source.task, source.class_labels)
        _parity(source.task, source_out, other, options.tolerance, f"{where} under {version}")
        runtimes.append(version)
    parity: dict[str, Any] = figures.as_dict()
    if source.task == "classification" and is_logits(source_out.scores):
        parity["scores_compared"] = "softmax"  # the model emits logits
    if options.labels is not None:
        parity.update(quality_figures(source.task, options.labels, source_out.labels,
                                      art_out.labels))
    names = _feature_names(options.feature_names, source.n_features)
    n_rows = sample.shape[0]
    rows = np.unique(np.linspace(0, n_rows - 1, min(options.smoke_count, n_rows, MAX_SMOKE_ROWS))
                     .round().astype(int))
    smoke_out = loaded.evaluate(sample32[rows])  # run on its own, as the device will
    smoke = SmokeTest(
        inputs=sample32[rows].astype(np.float64).tolist(),
        expected_labels=_plain_list(smoke_out.labels),
        expected_scores=(smoke_out.scores.astype(np.float64).tolist()
                         if smoke_out.scores is not None else None))
    class_labels = source.class_labels if source.task == "classification" else None
    manifest = Manifest(
        model=options.name, version=0, format=candidate.format, task=source.task,
        inputs=loaded.inputs, outputs=loaded.outputs, label_output=loaded.label_output,
        score_output=loaded.score_output, class_labels=class_labels, feature_names=tuple(names),
        artifact=ArtifactRef.describe(candidate.data), smoke_tests=(smoke,),
        smoke_tolerance=smoke_tolerance(candidate.precision, options.tolerance),
        precision=candidate.precision,
        source={**source.source_dict(), **candidate.converter},
        opset=loaded.opset, parity=parity,
        reference_profile=build_reference_profile(sample32.astype(np.float64), art_out.labels,
                                                  names, source.task, class_labels,
                                                  options.profile_bins, labels=options.labels,
                                                  scores=_probabilities(art_out.scores)),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        verified_runtimes=tuple(runtimes), tflite_ops=loaded.tflite_ops,
    )
    latency = single_row_latency(loaded.evaluate, sample32[:1])
    seconds = candidate.seconds + time.perf_counter() - started
    log.info("%s: %s %s artifact, %d bytes, max_abs_diff=%.3g, label agreement %.4f",
             options.name, candidate.format, candidate.precision, len(candidate.data),
             figures.max_abs_diff, figures.label_agreement)
    report = {"format": candidate.format, "precision": candidate.precision,
              "seconds": round(seconds, 3), "artifact_bytes": len(candidate.data),
              "estimator": source.description, "task": source.task,
              "latency_us": round(latency * 1e6, 1), "runtimes": runtimes,
              "parity": {**parity, "tied_labels_excused": figures.ties}}
    return ConversionResult(artifact=candidate.data, manifest=manifest, report=report)


def single_row_latency(run: Callable[[np.ndarray], Any], row: np.ndarray,
                       repeats: int = 50) -> float:
    """Median seconds for one single-row call (after two warm-up calls)."""
    for _ in range(2):
        run(row)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(row)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def is_logits(scores: np.ndarray | None) -> bool:
    """Scores that are not probabilities (negative, or rows not summing to 1)."""
    if scores is None or scores.size == 0:
        return False
    return bool((scores < -1e-6).any() or np.abs(scores.sum(axis=1) - 1.0).max() > 1e-3)


def _probabilities(scores: np.ndarray | None) -> np.ndarray | None:
    """Class probabilities for the reference profile's calibration (softmax of logits)."""
    if scores is None or scores.ndim != 2:
        return None
    return softmax(scores) if is_logits(scores) else scores


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def _parity(task: str, source: SourceOutput, artifact: SourceOutput, tolerance: Tolerance,
            where: str) -> ParityFigures:
    """Parity figures, or ParityError naming the format and precision.

    Classifier scores are compared as probabilities: a network that emits logits has both sides
    put through softmax first, so one tolerance means the same thing for every model.
    """
    try:
        if task == "classification":
            source_scores, artifact_scores = source.scores, artifact.scores
            if source_scores is not None and artifact_scores is not None and \
                    is_logits(source_scores):
                source_scores, artifact_scores = softmax(source_scores), softmax(artifact_scores)
            return classifier_parity(source.labels, artifact.labels, source_scores,
                                     artifact_scores, tolerance.max_abs_diff,
                                     tolerance.min_label_agreement)
        figures = regressor_parity(source.labels, artifact.labels, tolerance.max_abs_diff)
    except ParityError as exc:
        message = str(exc).split(". ", 1)
        hint = message[1] if len(message) > 1 else ""
        raise ParityError(exc.max_abs_diff, exc.label_agreement, exc.tolerance, exc.n, hint=hint,
                          min_label_agreement=exc.min_label_agreement, precision=where) from None
    return figures


class _OnnxArtifact:
    """An ONNX artifact in onnxruntime: labels from ``label``/``variable``, scores beside."""

    def __init__(self, data: bytes, source: Source) -> None:
        onnx = require("onnx")
        ort = require("onnxruntime")
        model = onnx.load_from_string(data)
        self.inputs = tensor_specs([i for i in model.graph.input
                                    if i.name not in {t.name for t in model.graph.initializer}])
        self.outputs = tensor_specs(model.graph.output)
        names = [o.name for o in self.outputs]
        self.label_output = next((n for n in ("label", "value", "variable") if n in names),
                                 names[0])
        self.score_output: str | None = None
        if source.task == "classification":
            others = [n for n in names if n != self.label_output]
            self.score_output = next((n for n in ("scores", "probabilities") if n in others),
                                     others[0] if others else None)
        self.opset = opset_versions(model)
        self.tflite_ops: dict[str, int] = {}
        self.runtime = f"onnxruntime=={ort.__version__}"
        self._runner = OnnxRunner(data)
        self._wanted = [self.label_output] + ([self.score_output] if self.score_output else [])

    def evaluate(self, rows: np.ndarray) -> SourceOutput:
        results = self._runner.run(rows, self._wanted)
        labels = results[0]
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        scores = results[1].astype(np.float64) if len(results) > 1 else None
        return SourceOutput(labels, scores)


class _TfliteArtifact:
    """A TFLite artifact in ai-edge-litert: one flat input, one output (scores or values)."""

    def __init__(self, data: bytes, source: Source) -> None:
        self._runner = TfliteRunner(data)
        self._source = source
        detail = self._runner.input_detail
        signature = [int(d) for d in detail.get("shape_signature", detail["shape"])]
        if len(signature) != 2 or signature[1] != source.n_features:
            raise ConversionError(
                f"the TFLite model's input has shape {signature}; Edgewise artifacts take flat "
                f"rows [batch, {source.n_features}] (convert from the source model, which "
                f"builds the reshape into the artifact)")
        output = self._runner.output_detail
        width = int(output["shape"][-1]) if len(output["shape"]) > 1 else 1
        self.inputs = (TensorSpec(str(detail["name"]), np.dtype(detail["dtype"]).name,
                                  (None, source.n_features)),)
        self.outputs = (TensorSpec(str(output["name"]), np.dtype(output["dtype"]).name,
                                   (None, width)),)
        self.label_output = str(output["name"])
        self.score_output = self.label_output if source.task == "classification" else None
        self.opset: dict[str, int] = {}
        self.tflite_ops = tflite_ops(data)
        self.runtime = litert_version()

    def evaluate(self, rows: np.ndarray) -> SourceOutput:
        return outputs_to_predictions(self._runner.run(rows), self._source.task,
                                      self._source.class_labels)


def _feature_names(given: Sequence[str] | None, n_features: int) -> list[str]:
    if given is None:
        return [f"f{i}" for i in range(n_features)]
    names = [str(x) for x in given]
    if len(names) != n_features:
        raise ConversionError(f"expected {n_features} feature names (one per input value), "
                              f"got {len(names)}")
    return names


def _plain_list(values: np.ndarray) -> list[Any]:
    out = np.asarray(values).tolist()
    return [v.decode() if isinstance(v, bytes) else v for v in out]
