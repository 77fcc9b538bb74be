"""How each kind of source model becomes candidate artifacts: one plan per source family
(scikit-learn, ONNX and PyTorch graphs, Keras, TFLite), each knowing its routes to ONNX and TFLite
and how to run the source for the parity check. :func:`plan_for` picks the plan.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from converters.artifact import Candidate, Options, verify
from converters.deps import require
from converters.errors import ConversionError, UnsupportedModelError
from converters.result import ConversionResult
from converters.routes import Route
from converters.source import (
    SUPPORTED_NN,
    Source,
    SourceOutput,
    default_class_labels,
    flatten_sample,
    infer_task,
    outputs_to_predictions,
)
from converters.validation import check_labels, check_sample

log = logging.getLogger("edgewise.converters")

FILE_KINDS = (
    "scikit-learn pickle/joblib (.pkl, .pickle, .joblib), Keras (.keras, .h5, SavedModel "
    "directory), PyTorch (TorchScript .pt/.pth/.torchscript, torch.export .pt2), ONNX (.onnx), "
    "TFLite (.tflite)"
)
Progress = Callable[[str], None]



class ConversionPlan:
    """A loaded source, its flat sample and predictions, and how to make each candidate."""

    def __init__(self, source: Source, sample: np.ndarray, labels: np.ndarray | None) -> None:
        self.source = source
        self.sample = sample
        self.labels = labels
        self.source_out: SourceOutput = source.predict(sample)
        self._float_onnx: Candidate | None = None
        self.wanted: tuple[str, ...] = ("float32",)  # every precision this run asks for
        self._tflite: dict[str, Candidate] = {}

    def routes(self, fmt: str, precision: str) -> list[Route]:
        """The converters to try, in order, for one artifact (one route unless overridden)."""
        if (fmt, precision) == ("onnx", "float32"):
            return [Route("", self.make_onnx)]
        return [Route("", lambda: self.candidate(fmt, precision))]

    def verify(self, candidate: Candidate, options: Options) -> ConversionResult:
        """Check ``candidate`` against the source on the sample and draft its manifest."""
        result = verify(self.source, self.sample, self.source_out, candidate, options)
        if candidate.format == "onnx" and candidate.precision == "float32":
            self._float_onnx = candidate  # quantized artifacts start from the verified graph
        return result

    def candidate(self, fmt: str, precision: str) -> Candidate:
        if fmt == "onnx" and precision != "float32":
            from converters.quantize import quantize_onnx

            base = self.float_onnx()
            return quantize_onnx(base.data, precision, self.sample,
                                 description=self.source.description, converter=base.converter)
        if fmt == "onnx":
            return self.float_onnx()
        return self.tflite(precision)

    def float_onnx(self) -> Candidate:
        """The verified float32 graph, else the first route's graph that can be made."""
        if self._float_onnx is None:
            errors: list[ConversionError] = []
            for route in self.routes("onnx", "float32"):
                try:
                    self._float_onnx = route.make()
                    break
                except ConversionError as exc:
                    errors.append(exc)
            else:
                raise errors[0]
        assert self._float_onnx is not None
        return self._float_onnx

    def make_onnx(self) -> Candidate:
        raise NotImplementedError

    def tflite(self, precision: str) -> Candidate:
        raise NotImplementedError


class _SklearnPlan(ConversionPlan):
    def __init__(self, estimator: Any, sample: Any, labels: Any) -> None:
        from converters.sklearn_onnx import _check_estimator, _predict_source, describe_estimator
        from converters.steps import check_steps

        task = _check_estimator(estimator)
        check_steps(estimator)
        description = describe_estimator(estimator)
        matrix = check_sample(sample, getattr(estimator, "n_features_in_", None))
        truth = check_labels(labels, matrix.shape[0]) if labels is not None else None
        has_proba = task == "classification" and hasattr(estimator, "predict_proba")
        classes = None
        if task == "classification":
            values = np.asarray(estimator.classes_)
            if values.dtype.kind in "bf":  # skl2onnx emits int64 labels for these
                values = values.astype(np.int64)
            classes = tuple(values.tolist())

        def predict(rows: np.ndarray) -> SourceOutput:
            pred, proba = _predict_source(estimator, rows, has_proba, description)
            return SourceOutput(pred, proba)

        sklearn = require("sklearn")
        source = Source(kind="sklearn", framework="sklearn",
                        framework_version=sklearn.__version__, description=description,
                        task=task, row_shape=(matrix.shape[1],), class_labels=classes,
                        predict=predict, model=estimator)
        super().__init__(source, matrix, truth)
        self.estimator = estimator

    def routes(self, fmt: str, precision: str) -> list[Route]:
        if fmt != "onnx" or precision != "float32":
            return super().routes(fmt, precision)
        from converters.hummingbird_convert import sklearn_to_onnx
        from converters.skl2onnx_env import sklearn_to_onnx_in_env

        return [
            Route("skl2onnx", lambda: self.skl2onnx(None)),
            Route("skl2onnx (side environment)",
                  lambda: sklearn_to_onnx_in_env(self.estimator, self.source)),
            Route("hummingbird-ml", lambda: sklearn_to_onnx(self.estimator, self.source,
                                                             self.sample)),
        ]

    def make_onnx(self) -> Candidate:
        return self.skl2onnx(None)

    def skl2onnx(self, target_opset: int | None) -> Candidate:
        from converters.sklearn_onnx import _to_onnx

        skl2onnx = require("skl2onnx")
        started = time.perf_counter()
        from converters.onnx_graph import with_flat_label

        model = with_flat_label(_to_onnx(self.estimator, self.source.n_features,
                                         self.source.description, target_opset))
        return Candidate("onnx", "float32", model.SerializeToString(),
                         {"converter": "skl2onnx", "converter_version": skl2onnx.__version__},
                         time.perf_counter() - started)

    def tflite(self, precision: str) -> Candidate:
        from converters.boosting import SUPPORTED_BOOSTING, TFLITE_REFUSAL, is_boosting_wrapper
        from converters.hummingbird_convert import PRECISIONS as HUMMINGBIRD_PRECISIONS
        from converters.hummingbird_convert import sklearn_to_tflite
        from converters.sklearn_onnx import _final_step

        if is_boosting_wrapper(_final_step(self.estimator)):
            raise UnsupportedModelError(self.source.description, TFLITE_REFUSAL,
                                        supported=SUPPORTED_BOOSTING)

        if precision not in self._tflite:  # one hummingbird + onnx2tf run for all wanted
            batch = [p for p in self.wanted if p in HUMMINGBIRD_PRECISIONS
                     and p not in self._tflite] or [precision]
            self._tflite.update(sklearn_to_tflite(self.estimator, self.source, self.sample,
                                                  batch))
        return self._tflite[precision]


class _TabularPlan(ConversionPlan):
    """Pipelines over named, mixed-type columns: one typed ONNX input per column."""

    def __init__(self, estimator: Any, sample: Any, labels: Any) -> None:
        from converters.sklearn_onnx import _check_estimator, describe_estimator
        from converters.steps import check_steps
        from converters.tabular import monitor_matrix, tabular_source

        task = _check_estimator(estimator)
        check_steps(estimator)
        description = describe_estimator(estimator)
        source, self.frame, self.schema, output, truth = tabular_source(
            estimator, sample, labels, task, description)
        # no super().__init__: the source runs on the DataFrame, not on flat rows
        self.source = source
        self.sample = monitor_matrix(self.schema, self.frame)
        self.labels = truth
        self.source_out = output
        self._float_onnx = None
        self.wanted = ("float32",)
        self._tflite = {}
        self.estimator = estimator

    def make_onnx(self) -> Candidate:
        from converters.tabular import to_onnx

        return to_onnx(self.estimator, self.schema, self.source.description)

    def verify(self, candidate: Candidate, options: Options) -> ConversionResult:
        from converters.tabular import verify_tabular

        return verify_tabular(self.source, self.frame, self.schema, self.source_out, candidate,
                              options)

    def candidate(self, fmt: str, precision: str) -> Candidate:
        if (fmt, precision) != ("onnx", "float32"):
            raise UnsupportedModelError(
                self.source.description, f"{fmt} {precision} is not offered for pipelines with "
                "named, mixed-type inputs (string inputs have no TFLite form, and quantizing "
                "would touch encoded categories); convert to onnx float32")
        return self.float_onnx()


class _CatBoostPlan(ConversionPlan):
    """CatBoost models: their own ONNX export; no TFLite route."""

    def __init__(self, model: Any, sample: Any, labels: Any) -> None:
        from converters.boosting import catboost_source

        source, matrix, truth = catboost_source(model, sample, labels)
        super().__init__(source, matrix, truth)

    def make_onnx(self) -> Candidate:
        from converters.boosting import catboost_to_onnx

        return catboost_to_onnx(self.source)

    def tflite(self, precision: str) -> Candidate:
        from converters.boosting import SUPPORTED_BOOSTING, TFLITE_REFUSAL

        raise UnsupportedModelError(self.source.description, TFLITE_REFUSAL,
                                    supported=SUPPORTED_BOOSTING)


class _GraphPlan(ConversionPlan):
    """Sources that become a core ONNX graph first (torch modules, ONNX files)."""

    def __init__(self, source: Source, sample: np.ndarray, labels: np.ndarray | None,
                 core: Callable[[], tuple[Any, Candidate]]) -> None:
        super().__init__(source, sample, labels)
        self._core_factory = core
        self._core: tuple[Any, Candidate] | None = None

    def core(self) -> tuple[Any, Candidate]:
        if self._core is None:
            self._core = self._core_factory()
        return self._core

    def make_onnx(self) -> Candidate:
        from converters.onnx_graph import onnx_bytes, with_label_head

        model, record = self.core()
        started = time.perf_counter()
        data = onnx_bytes(with_label_head(model, self.source.task, self.source.class_labels))
        return replace(record, data=data, seconds=record.seconds + time.perf_counter() - started)

    def tflite(self, precision: str) -> Candidate:
        from converters.onnx_graph import onnx_bytes
        from converters.onnx_tflite import OUTPUT_SUFFIX, onnx_to_tflite_many

        if precision not in self._tflite:  # one onnx2tf run for every precision wanted
            model, record = self.core()
            batch = [p for p in self.wanted if p in OUTPUT_SUFFIX and p not in self._tflite]
            made = onnx_to_tflite_many(onnx_bytes(model), batch or [precision], self.sample,
                                       description=self.source.description)
            for key, candidate in made.items():
                self._tflite[key] = replace(candidate, seconds=candidate.seconds + record.seconds)
        return self._tflite[precision]


class _KerasPlan(ConversionPlan):
    def __init__(self, model: Any, sample: Any, labels: Any, task: str | None,
                 class_labels: Sequence[Any] | None, say: Progress) -> None:
        from converters.keras_convert import keras_source

        say("tracing the Keras model")
        probe_source, _ = keras_source(model, None, task=task, labels=None,
                                       class_labels=class_labels)
        matrix = flatten_sample(sample, probe_source.row_shape)
        truth = check_labels(labels, matrix.shape[0]) if labels is not None else None
        source, self.flat = keras_source(model, matrix, task=task, labels=truth,
                                         class_labels=class_labels)
        super().__init__(source, matrix, truth)

    def make_onnx(self) -> Candidate:
        from converters.keras_convert import to_onnx

        return to_onnx(self.source, self.flat)

    def tflite(self, precision: str) -> Candidate:
        from converters.keras_convert import to_tflite

        with tempfile.TemporaryDirectory(prefix="edgewise-keras-") as tmp:
            return to_tflite(self.source, self.flat, precision, self.sample, Path(tmp))


class _TflitePlan(ConversionPlan):
    """A TFLite file as is: verified in the interpreter(s), described, never re-converted."""

    def __init__(self, data: bytes, sample: Any, labels: Any, task: str | None,
                 class_labels: Sequence[Any] | None) -> None:
        from converters.tflite_check import TfliteRunner

        runner = TfliteRunner(data)
        detail = runner.input_detail
        shape = [int(d) for d in detail.get("shape_signature", detail["shape"])]
        row_shape = tuple(shape[1:])
        matrix = flatten_sample(sample, row_shape)
        truth = check_labels(labels, matrix.shape[0]) if labels is not None else None
        width = int(np.asarray(runner.run(matrix[:1])).reshape(1, -1).shape[1])
        resolved = infer_task(width, task)
        classes = default_class_labels(width, truth, class_labels) \
            if resolved == "classification" else None
        dtype = np.dtype(detail["dtype"])
        self.precision = "int8-static" if dtype.kind in "iu" else "float32"

        def predict(rows: np.ndarray) -> SourceOutput:
            return outputs_to_predictions(runner.run(rows), resolved, classes)

        source = Source(kind="tflite", framework="tflite", framework_version="",
                        description="TFLite model (pass-through)", task=resolved,
                        row_shape=row_shape, class_labels=classes, predict=predict, model=data)
        super().__init__(source, matrix, truth)
        self.data = data

    def candidate(self, fmt: str, precision: str) -> Candidate:
        if fmt != "tflite":
            raise UnsupportedModelError("a TFLite model", "TFLite files pass through as TFLite; "
                                        "convert the source model for ONNX",
                                        supported=FILE_KINDS)
        if precision not in ("float32", self.precision):
            raise UnsupportedModelError("a TFLite model", f"a TFLite file is not re-quantized "
                                        f"(it is {self.precision}); quantize from the source "
                                        "model", supported=FILE_KINDS)
        return Candidate("tflite", self.precision, self.data, {"converter": "pass-through"})


def plan_for(model: Any, kind: str, sample: Any, labels: Any, task: str | None,
          class_labels: Sequence[Any] | None, example_input: Any, say: Progress) -> ConversionPlan:
    from converters.tabular import is_frame

    if kind == "sklearn":
        if task not in (None, "classification", "regression"):
            raise ValueError(f"unknown task {task!r}")
        from converters.tabular import wants_tabular

        if wants_tabular(model, sample):
            return _TabularPlan(model, sample, labels)
        if is_frame(sample):
            sample = sample.to_numpy()
        return _SklearnPlan(model, sample, labels)
    if kind != "sklearn" and is_frame(sample):  # a table read from .csv/.parquet
        sample = sample.to_numpy()
    if kind == "catboost":
        return _CatBoostPlan(model, sample, labels)
    if kind == "keras":
        return _KerasPlan(model, sample, labels, task, class_labels, say)
    if kind == "torch":
        from converters.torch_convert import example_row_shape, to_core_onnx, torch_source

        row_shape = example_row_shape(example_input, sample)
        matrix = flatten_sample(sample, row_shape)
        truth = check_labels(labels, matrix.shape[0]) if labels is not None else None
        source = torch_source(model, matrix, row_shape, task=task, labels=truth,
                              class_labels=class_labels)
        return _GraphPlan(source, matrix, truth, lambda: to_core_onnx(source, matrix))
    if kind == "onnx":
        return _onnx_plan(bytes(model), sample, labels, task, class_labels)
    if kind == "tflite":
        return _TflitePlan(bytes(model), sample, labels, task, class_labels)
    raise ValueError(f"unknown model kind {kind!r}")


def _onnx_plan(data: bytes, sample: Any, labels: Any, task: str | None,
               class_labels: Sequence[Any] | None) -> ConversionPlan:
    from converters.onnx_graph import load_model, real_inputs, row_shape_of, uses_ml_ops
    from converters.onnx_model import OnnxRunner

    onnx = require("onnx")
    model = load_model(data)
    description = f"ONNX graph ({model.producer_name or 'unknown producer'})"
    inputs = real_inputs(model)
    outputs = [o.name for o in model.graph.output]
    if len(inputs) != 1 or len(outputs) != 1:
        ml = uses_ml_ops(model)
        hint = (" (a scikit-learn export: convert the original estimator instead)" if ml else "")
        raise UnsupportedModelError(description, f"it has {len(inputs)} inputs and "
                                    f"{len(outputs)} outputs{hint}", supported=SUPPORTED_NN)
    row_shape = row_shape_of(inputs[0], description)
    matrix = flatten_sample(sample, row_shape)
    truth = check_labels(labels, matrix.shape[0]) if labels is not None else None
    runner = OnnxRunner(data)
    original_input = inputs[0].name

    def raw(rows: np.ndarray) -> np.ndarray:
        (out,) = runner.run(rows.reshape(rows.shape[0], *row_shape), [outputs[0]])
        return np.asarray(out).reshape(rows.shape[0], -1)

    width = raw(matrix[:1]).shape[1]
    resolved = infer_task(width, task)
    classes = default_class_labels(width, truth, class_labels) \
        if resolved == "classification" else None
    source = Source(kind="onnx", framework="onnx", framework_version=onnx.__version__,
                    description=description, task=resolved, row_shape=row_shape,
                    class_labels=classes,
                    predict=lambda rows: outputs_to_predictions(raw(rows), resolved, classes),
                    model=data, details={"input": original_input})

    def core() -> tuple[Any, Candidate]:
        from converters.onnx_graph import with_flat_input

        return with_flat_input(model, row_shape), Candidate(
            "onnx", "float32", b"", {"converter": "edgewise (input reshape, label head)"})

    return _GraphPlan(source, matrix, truth, core)

