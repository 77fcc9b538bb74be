"""One entry point for every conversion: ``convert`` (many artifacts) and ``convert_one``.

A model (object or file) is loaded into a ``Source``; for each requested format and precision
a converter produces candidate bytes, and converters.artifact verifies them against the source
on the sample and writes the manifest. ``edgewise convert`` and ``edgewise models push`` both
come through here.

Routes (source → format/precision → tool):

==========  ====================================  =============================================
source      onnx                                  tflite
==========  ====================================  =============================================
sklearn     skl2onnx, then skl2onnx in its side   hummingbird-ml → onnx2tf (float32, float16)
            env, then hummingbird-ml (first with
            parity wins); int8 via onnxruntime
xgboost,    skl2onnx + onnxmltools converters     refused (ai.onnx.ml tree ops)
lightgbm
catboost    catboost's own ONNX export            refused (ai.onnx.ml tree ops)
tabular     skl2onnx, one named typed input per   refused (string inputs)
            column (ColumnTransformer pipelines)
keras       tf2onnx; int8 via onnxruntime         TFLiteConverter (all four precisions)
torch       torch.onnx.export; int8 via ORT       onnx2tf on the exported graph
onnx file   the graph (flat input, label head)    onnx2tf
tflite      —                                     pass-through, verified
==========  ====================================  =============================================
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.artifact import Options
from converters.errors import ConversionError, ModelFileError, UnsupportedModelError
from converters.loading import MODEL_SUFFIXES, load_model_file
from converters.plans import FILE_KINDS, Progress, plan_for
from converters.precision import FORMAT_PRECISIONS, Tolerance, tolerance_for
from converters.result import ConversionResult
from converters.routes import first_with_parity
from converters.source import (
    SUPPORTED_NN,
    Source,
)

log = logging.getLogger("edgewise.converters")

FORMATS = ("onnx", "tflite")


@dataclass(frozen=True)
class Outcome:
    """One requested artifact: the verified result, or why it could not be made."""

    format: str
    precision: str
    result: ConversionResult | None
    error: ConversionError | None
    seconds: float


def load_model_path(path: str | Path) -> tuple[Any, str]:
    """(model, kind) from a file or SavedModel directory, by its extension."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(path, "no such file or directory")
    suffix = path.suffix.lower()
    if path.is_dir():
        from converters.keras_convert import is_saved_model_dir, load_keras_file

        if is_saved_model_dir(path):
            return load_keras_file(path), "keras"
        raise ModelFileError(path, "a directory, but not a SavedModel (no saved_model.pb)")
    if suffix in MODEL_SUFFIXES:
        from converters.boosting import is_catboost

        model = load_model_file(path)
        return model, "catboost" if is_catboost(model) else "sklearn"
    if suffix in (".keras", ".h5"):
        from converters.keras_convert import load_keras_file

        return load_keras_file(path), "keras"
    if suffix in (".pt", ".pth", ".torchscript", ".pt2"):
        from converters.torch_convert import load_torch_file

        return load_torch_file(path), "torch"
    if suffix in (".onnx", ".tflite"):
        data = path.read_bytes()
        if not data:
            raise ModelFileError(path, "the file is empty")
        try:
            if suffix == ".onnx":
                from converters.onnx_graph import load_model

                load_model(data)
            else:
                from converters.tflite_check import TfliteRunner

                TfliteRunner(data)
        except ConversionError as exc:
            raise ModelFileError(path, str(exc)) from exc
        return data, suffix[1:]
    raise ModelFileError(path, f"unknown model file extension {suffix!r}; expected {FILE_KINDS}")


def detect_kind(model: Any) -> str:
    """"sklearn" | "catboost" | "keras" | "torch" for model objects."""
    from converters.boosting import is_catboost
    from converters.keras_convert import _SavedModel, is_keras_model
    from converters.torch_convert import is_torch_module

    if is_catboost(model):
        return "catboost"
    if isinstance(model, _SavedModel) or is_keras_model(model):
        return "keras"
    if is_torch_module(model):
        return "torch"
    if any(c.__module__.startswith("sklearn.") for c in type(model).__mro__):
        return "sklearn"
    if isinstance(model, (bytes, bytearray)):
        raise ValueError("pass ONNX/TFLite bytes with kind='onnx' or kind='tflite'")
    from converters.sklearn_onnx import describe_estimator

    raise UnsupportedModelError(describe_estimator(model), "not a model Edgewise knows",
                                supported=f"scikit-learn estimators; {SUPPORTED_NN}")


def convert(model: Any, sample: Any, *, name: str, formats: Sequence[str] = ("onnx",),
            precisions: Sequence[str] = ("float32",), labels: Any = None,
            task: str | None = None, class_labels: Sequence[Any] | None = None,
            tolerances: Mapping[str, Tolerance] | None = None,
            tflite_runtimes: Sequence[str] = ("ai-edge-litert",),
            example_input: Any = None, feature_names: Sequence[str] | None = None,
            kind: str | None = None, progress: Progress | None = None) -> list[Outcome]:
    """Convert ``model`` to every (format, precision) asked for; each verified on ``sample``.

    ``model`` is an object (scikit-learn estimator, Keras model, torch module) or a path (see
    load_model_path); ``kind`` names what bytes are ("onnx"/"tflite"). ``labels`` (one per sample
    row) add source and artifact accuracy. ``tolerances`` override the per-precision defaults
    (key ``"*"`` for all). A failure of one artifact does not stop the others: each Outcome
    carries its result or its error. Errors about the model or the sample itself (unsupported
    model, wrong sample shape) are raised at once.
    """
    say = progress or (lambda message: None)
    formats = _check_choices(formats, FORMATS, "format")
    for precision in precisions:
        if not any(precision in FORMAT_PRECISIONS[f] for f in formats):
            raise ValueError(f"precision {precision!r} is not available for {', '.join(formats)}")
    if not name or len(name) > 128:
        raise ValueError(f"name must be a non-empty string of at most 128 characters, got {name!r}")
    if isinstance(model, (str, Path)):
        say(f"loading {model}")
        model, kind = load_model_path(model)
    kind = kind or detect_kind(model)
    plan = plan_for(model, kind, sample, labels, task, class_labels, example_input, say)
    plan.wanted = tuple(precisions)
    outcomes = []
    for fmt in formats:
        for precision in precisions:
            if precision not in FORMAT_PRECISIONS[fmt]:
                continue
            started = time.perf_counter()
            say(f"{fmt} {precision}: converting")
            options = Options(name=name, tolerance=tolerance_for(precision, tolerances),
                              labels=plan.labels, feature_names=feature_names,
                              tflite_runtimes=tuple(tflite_runtimes))
            def check(candidate: Any, options: Options = options, fmt: str = fmt,
                      precision: str = precision) -> ConversionResult:
                say(f"{fmt} {precision}: verifying {len(candidate.data)} bytes on "
                    f"{plan.sample.shape[0]} rows")
                return plan.verify(candidate, options)

            try:
                result = first_with_parity(plan.routes(fmt, precision), check, say,
                                           f"{fmt} {precision}")
                outcome = Outcome(fmt, precision, result, None, time.perf_counter() - started)
                say(f"{fmt} {precision}: ok via {result.report.get('route')}, max |diff| "
                    f"{result.manifest.parity['max_abs_diff']:.2e}")
            except ConversionError as exc:
                outcome = Outcome(fmt, precision, None, exc, time.perf_counter() - started)
                say(f"{fmt} {precision}: FAILED: {exc}")
            outcomes.append(outcome)
    return outcomes


def load_source(model: Any, sample: Any, *, kind: str | None = None, labels: Any = None,
                task: str | None = None, class_labels: Sequence[Any] | None = None,
                example_input: Any = None) -> tuple[Source, np.ndarray]:
    """The model as a Source and the sample as flat float64 rows, as convert() sees them."""
    if isinstance(model, (str, Path)):
        model, kind = load_model_path(model)
    plan = plan_for(model, kind or detect_kind(model), sample, labels, task, class_labels,
                 example_input, lambda message: None)
    return plan.source, plan.sample


def convert_one(model: Any, sample: Any, *, name: str, format: str = "onnx",
                precision: str = "float32", **kwargs: Any) -> ConversionResult:
    """Convert to a single artifact, raising its ConversionError (ParityError, ...) if any."""
    if precision not in FORMAT_PRECISIONS.get(format, ()):
        raise ValueError(f"precision {precision!r} is not available for {format!r}; "
                         f"choose from {FORMAT_PRECISIONS.get(format, ())}")
    (outcome,) = convert(model, sample, name=name, formats=(format,), precisions=(precision,),
                         **kwargs)
    if outcome.error is not None:
        raise outcome.error
    assert outcome.result is not None
    return outcome.result


# -- per-source plans ---------------------------------------------------------------------------


def _check_choices(values: Sequence[str], allowed: Sequence[str], what: str) -> list[str]:
    values = [v.strip().lower() for v in values if v.strip()]
    if not values:
        raise ValueError(f"no {what} given; choose from {', '.join(allowed)}")
    for value in values:
        if value not in allowed:
            raise ValueError(f"unknown {what} {value!r}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(values))
