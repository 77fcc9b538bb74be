"""Mixed-type tabular pipelines: one named, typed ONNX input per column, and the input schema.

A scikit-learn Pipeline whose ColumnTransformer one-hot or ordinal encodes string columns,
imputes and scales numbers and vectorises text cannot take one float matrix: its artifact gets
one input per column (float32 numbers, strings for categories and text), and the manifest
records the schema (edgewise_wire/records.py) the agent checks records against, with the
categories each encoder saw in training.

The sample is a pandas DataFrame (``--sample`` as .csv with a header or .parquet). Parity is
measured on it as everywhere; the smoke tests carry rows of field values; the reference profile
bins numbers by quantiles and gives each category a bin of its own (edges 0.5, 1.5, ... over the
category's index), so drift on a category is measured like drift on a number. Text fields are
profiled by their word count.

Refused, with the column named: missing values in category or text columns (the encoders'
ONNX forms have no missing category), and pandas categorical columns that reach the model as
category codes rather than through an encoder (the codes depend on the dtype's category list,
which an ONNX graph cannot reproduce). Quantized and TFLite artifacts are not offered (string
inputs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from converters.artifact import (
    Candidate,
    Options,
    _parity,
    _plain_list,
    _probabilities,
    single_row_latency,
)
from converters.deps import require
from converters.errors import ConversionError, SampleDataError, UnsupportedModelError
from converters.onnx_model import opset_versions, tensor_specs
from converters.parity import quality_figures
from converters.precision import smoke_tolerance
from converters.profile import build_reference_profile
from converters.result import ConversionResult
from converters.source import Source, SourceOutput
from converters.steps import walk
from converters.validation import check_labels
from edgewise_wire.manifest import ArtifactRef, Manifest, SmokeTest
from edgewise_wire.records import InputField, InputSchema

ENCODERS = ("OneHotEncoder", "OrdinalEncoder", "TargetEncoder")
TEXT = ("TfidfVectorizer", "CountVectorizer", "HashingVectorizer")
MAX_SMOKE_ROWS = 1000


def is_frame(sample: Any) -> bool:
    return hasattr(sample, "columns") and hasattr(sample, "dtypes") and hasattr(sample, "iloc")


def has_column_transformer(estimator: Any) -> bool:
    return any(type(step).__name__ == "ColumnTransformer" for _, step in walk(estimator))


def wants_tabular(estimator: Any, sample: Any) -> bool:
    """A DataFrame sample with a non-numeric column, or a model with a ColumnTransformer."""
    if has_column_transformer(estimator):
        return True
    if not is_frame(sample):
        return False
    pandas = require("pandas")
    return not all(pandas.api.types.is_numeric_dtype(t) and not isinstance(
        t, pandas.CategoricalDtype) for t in sample.dtypes)


def as_frame(estimator: Any, sample: Any) -> Any:
    """The sample as a DataFrame with the columns the model was fitted on, in that order."""
    pandas = require("pandas")
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        raise UnsupportedModelError(type(estimator).__name__,
                                    "it was not fitted on a DataFrame, so its columns have no "
                                    "names to make named inputs of")
    names = [str(n) for n in names]
    if not is_frame(sample):
        array = np.asarray(sample)
        if array.ndim != 2 or array.shape[1] != len(names):
            raise SampleDataError(f"sample must be a table with the columns {names}; give a "
                                  ".csv with a header or a .parquet file")
        return pandas.DataFrame(array, columns=names)
    missing = [n for n in names if n not in sample.columns]
    if missing:
        raise SampleDataError(f"sample lacks the column(s) {missing} the model was fitted on "
                              f"(it has {[str(c) for c in sample.columns]})")
    if len(sample) == 0:
        raise SampleDataError("sample is empty: expected at least one row")
    return sample[names].reset_index(drop=True)


def _column_roles(estimator: Any, names: Sequence[str]) -> dict[str, tuple[str, Any, int]]:
    """Column → (role, transformer, position of the column in its input), for columns that
    a ColumnTransformer sends through an encoder ("category") or a text vectorizer ("text")."""
    roles: dict[str, tuple[str, Any, int]] = {}
    for _, step in walk(estimator):
        if type(step).__name__ != "ColumnTransformer":
            continue
        indices = getattr(step, "_transformer_to_input_indices", {})
        fitted = {name: trans for name, trans, *_ in step.transformers_}
        for name, columns in indices.items():
            trans = fitted.get(name)
            if trans is None or isinstance(trans, str):
                continue
            inner = [s for _, s in walk(trans)]
            for position, index in enumerate(columns):
                column = names[index]
                encoder = next((s for s in inner if type(s).__name__ in ENCODERS), None)
                if encoder is not None:
                    roles[column] = ("category", encoder, position)
                elif any(type(s).__name__ in TEXT for s in inner):
                    roles[column] = ("text", None, position)
    return roles


def _imputed(estimator: Any, names: Sequence[str]) -> dict[str, float]:
    """Column → the value its SimpleImputer puts in for a missing one (what the model sees)."""
    out: dict[str, float] = {}
    for _, step in walk(estimator):
        if type(step).__name__ != "ColumnTransformer":
            continue
        fitted = {name: trans for name, trans, *_ in step.transformers_}
        for name, columns in getattr(step, "_transformer_to_input_indices", {}).items():
            trans = fitted.get(name)
            if trans is None or isinstance(trans, str):
                continue
            imputer = next((s for _, s in walk(trans) if "Imputer" in type(s).__name__), None)
            if imputer is None:
                continue
            statistics = getattr(imputer, "statistics_", None)
            for position, index in enumerate(columns):
                value = math.nan
                if statistics is not None and position < len(statistics):
                    value = float(statistics[position])
                out[names[index]] = value
    return out


def input_schema(estimator: Any, frame: Any) -> InputSchema:
    """The schema of the model's inputs, refusing columns no ONNX graph can take."""
    pandas = require("pandas")
    names = [str(c) for c in frame.columns]
    roles = _column_roles(estimator, names)
    imputed = _imputed(estimator, names)
    final = type(estimator).__name__
    fields = []
    for name in names:
        column = frame[name]
        is_categorical = isinstance(column.dtype, pandas.CategoricalDtype)
        role, encoder, position = roles.get(name, ("number", None, 0))
        if role == "number" and (is_categorical or not pandas.api.types.is_numeric_dtype(
                column.dtype)):
            kind = "pandas categorical" if is_categorical else f"{column.dtype} column"
            raise UnsupportedModelError(
                f"{final} (column {name!r})",
                f"the {kind} reaches the model without an encoder; ONNX graphs take numbers, "
                f"or strings through an encoder: encode it with OneHotEncoder or OrdinalEncoder "
                f"in a ColumnTransformer")
        if role == "number":
            value = imputed.get(name)
            fields.append(InputField(name, "number", "float32", nullable=name in imputed,
                                     imputed=value if value is not None and math.isfinite(value)
                                     else None))
            continue
        if column.isna().any():
            raise SampleDataError(
                f"column {name!r} has {int(column.isna().sum())} missing values; missing values "
                f"in category and text columns are not supported (fill them with a category "
                f"of their own, e.g. 'missing', before training)")
        if role == "text":
            fields.append(InputField(name, "text", "string"))
            continue
        seen = [c for c in np.asarray(encoder.categories_[position]).tolist()
                if not (isinstance(c, float) and math.isnan(c))]
        if all(isinstance(c, str) for c in seen):
            fields.append(InputField(name, "category", "string", tuple(seen)))
        elif all(isinstance(c, int) and not isinstance(c, bool) for c in seen):
            fields.append(InputField(name, "category", "int64", tuple(seen)))
        else:
            raise UnsupportedModelError(
                f"{type(encoder).__name__} (column {name!r})",
                f"its categories mix types ({seen[:5]}); use strings or integers")
    return InputSchema(tuple(fields))


def feed(schema: InputSchema, frame: Any) -> dict[str, np.ndarray]:
    """The artifact's named inputs for the rows of ``frame``."""
    out = {}
    for field in schema.fields:
        column = frame[field.name]
        if field.kind == "number":
            values = column.astype(np.float64).to_numpy(dtype=np.float32)
        elif field.dtype == "int64":
            values = column.astype(np.int64).to_numpy()
        else:
            values = np.array([str(v) for v in column], dtype=object)
        out[field.name] = values.reshape(-1, 1)
    return out


def records(schema: InputSchema, frame: Any) -> list[list[Any]]:
    """Rows of plain JSON values in field order (missing numbers as None)."""
    rows = []
    for row in frame[list(schema.names)].itertuples(index=False):
        values: list[Any] = []
        for field, value in zip(schema.fields, row, strict=True):
            if field.kind == "number":
                number = float(value)
                values.append(None if math.isnan(number) else number)
            elif field.dtype == "int64":
                values.append(int(value))
            else:
                values.append(str(value))
        rows.append(values)
    return rows


def monitor_matrix(schema: InputSchema, frame: Any) -> np.ndarray:
    """The numeric view the agent monitors (edgewise_wire/records.py), one column per field."""
    columns = [[field.monitor_value(v) for v in column] for field, column in
               zip(schema.fields, zip(*records(schema, frame), strict=True), strict=True)]
    return np.array(columns, dtype=np.float64).T


def to_onnx(estimator: Any, schema: InputSchema, description: str) -> Candidate:
    """skl2onnx with one input per field; ZipMap off, text normalised in the C locale."""
    skl2onnx = require("skl2onnx")
    types = require("skl2onnx.common.data_types")
    base = require("sklearn.base")
    from converters.boosting import register_boosting_converters
    from converters.sklearn_onnx import _final_step, opsets_for

    register_boosting_converters()
    initial = []
    for field in schema.fields:
        if field.kind == "number":
            initial.append((field.name, types.FloatTensorType([None, 1])))
        elif field.dtype == "int64":
            initial.append((field.name, types.Int64TensorType([None, 1])))
        else:
            initial.append((field.name, types.StringTensorType([None, 1])))
    final = _final_step(estimator)
    options: dict[int, dict[str, Any]] = {}
    if base.is_classifier(final):
        options[id(final)] = {"zipmap": False}
    for _, step in walk(estimator):
        if type(step).__name__ in ("TfidfVectorizer", "CountVectorizer"):
            # the default en_US.UTF-8 locale is missing on many devices (and CI machines)
            options[id(step)] = {"locale": "C"}
    started = time.perf_counter()
    try:
        model = skl2onnx.convert_sklearn(estimator, initial_types=initial, options=options,
                                         target_opset=opsets_for(final, None))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise UnsupportedModelError(description, f"skl2onnx failed ({type(exc).__name__}: "
                                                 f"{first})") from exc
    return Candidate("onnx", "float32", model.SerializeToString(),
                     {"converter": "skl2onnx", "converter_version": skl2onnx.__version__},
                     time.perf_counter() - started)


def tabular_source(estimator: Any, sample: Any, labels: Any, task: str,
                   description: str) -> tuple[Source, Any, InputSchema, SourceOutput,
                                              np.ndarray | None]:
    """(Source, frame, schema, the model's predictions on the frame, labels)."""
    from converters.sklearn_onnx import _predict_source

    frame = as_frame(estimator, sample)
    schema = input_schema(estimator, frame)
    truth = check_labels(labels, len(frame)) if labels is not None else None
    has_proba = task == "classification" and hasattr(estimator, "predict_proba")
    pred, proba = _predict_source(estimator, frame, has_proba, description)
    classes = None
    if task == "classification":
        values = np.asarray(estimator.classes_)
        if values.dtype.kind in "bf":
            values = values.astype(np.int64)
        classes = tuple(values.tolist())

    def predict(rows: np.ndarray) -> SourceOutput:
        raise ConversionError("a tabular model is run on its DataFrame sample, not flat rows")

    sklearn = require("sklearn")
    source = Source(kind="sklearn", framework="sklearn", framework_version=sklearn.__version__,
                    description=description, task=task, row_shape=(len(schema.fields),),
                    class_labels=classes, predict=predict, model=estimator,
                    details={"inputs": "records"})
    return source, frame, schema, SourceOutput(pred, proba), truth


def verify_tabular(source: Source, frame: Any, schema: InputSchema, source_out: SourceOutput,
                   candidate: Candidate, options: Options) -> ConversionResult:
    """Run the multi-input artifact on the DataFrame sample, check parity, draft the manifest."""
    onnx = require("onnx")
    ort = require("onnxruntime")
    started = time.perf_counter()
    model = onnx.load_from_string(candidate.data)
    inputs = tensor_specs(model.graph.input)
    outputs = tensor_specs(model.graph.output)
    names = [o.name for o in outputs]
    label_output = "label" if "label" in names else ("variable" if "variable" in names
                                                     else names[0])
    score_output = None
    if source.task == "classification":
        score_output = next((n for n in ("probabilities", "scores") if n in names), None)
    wanted = [label_output] + ([score_output] if score_output else [])
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = 1
    session_options.inter_op_num_threads = 1
    session_options.log_severity_level = 3
    try:
        session = ort.InferenceSession(candidate.data, session_options,
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ConversionError(f"onnxruntime cannot load the converted model: {exc}") from exc

    def evaluate(rows: Any) -> SourceOutput:
        try:
            results = session.run(wanted, feed(schema, rows))
        except Exception as exc:
            raise ConversionError(f"onnxruntime failed to run the converted model: {exc}") \
                from exc
        labels = np.asarray(results[0])
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        scores = np.asarray(results[1], dtype=np.float64) if len(results) > 1 else None
        return SourceOutput(labels, scores)

    art_out = evaluate(frame)
    figures = _parity(source.task, source_out, art_out, options.tolerance,
                      f"{candidate.format} {candidate.precision}")
    parity: dict[str, Any] = figures.as_dict()
    if options.labels is not None:
        parity.update(quality_figures(source.task, options.labels, source_out.labels,
                                      art_out.labels))
    n_rows = len(frame)
    rows = np.unique(np.linspace(0, n_rows - 1, min(options.smoke_count, n_rows,
                                                      MAX_SMOKE_ROWS)).round().astype(int))
    smoke_frame = frame.iloc[rows].reset_index(drop=True)
    smoke_out = evaluate(smoke_frame)
    smoke = SmokeTest(inputs=records(schema, smoke_frame),
                      expected_labels=_plain_list(smoke_out.labels),
                      expected_scores=(smoke_out.scores.tolist()
                                       if smoke_out.scores is not None else None))
    class_labels = source.class_labels if source.task == "classification" else None
    profile = reference_profile(schema, frame, art_out, source.task, class_labels, options)
    manifest = Manifest(
        model=options.name, version=0, format="onnx", task=source.task, inputs=inputs,
        outputs=outputs, label_output=label_output, score_output=score_output,
        class_labels=class_labels, feature_names=schema.names,
        artifact=ArtifactRef.describe(candidate.data), smoke_tests=(smoke,),
        smoke_tolerance=smoke_tolerance(candidate.precision, options.tolerance),
        precision=candidate.precision, source={**source.source_dict(), **candidate.converter},
        opset=opset_versions(model), parity=parity, reference_profile=profile,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        verified_runtimes=(f"onnxruntime=={ort.__version__}",), input_schema=schema)
    latency = single_row_latency(evaluate, frame.iloc[:1])
    report = {"format": "onnx", "precision": candidate.precision,
              "seconds": round(candidate.seconds + time.perf_counter() - started, 3),
              "artifact_bytes": len(candidate.data), "estimator": source.description,
              "task": source.task, "latency_us": round(latency * 1e6, 1),
              "runtimes": list(manifest.verified_runtimes), "inputs": len(schema.fields),
              "parity": {**parity, "tied_labels_excused": figures.ties}}
    return ConversionResult(artifact=candidate.data, manifest=manifest, report=report)


def reference_profile(schema: InputSchema, frame: Any, art_out: SourceOutput, task: str,
                      class_labels: Sequence[Any] | None, options: Options) -> dict[str, Any]:
    """Quantile bins for numbers and word counts, one bin per category (see the docstring)."""
    matrix = monitor_matrix(schema, frame)  # nulls at their imputed value, as the agent sees
    for j in range(matrix.shape[1]):  # a null without a known imputed value: the median
        column = matrix[:, j]
        if np.isnan(column).any():
            finite = column[~np.isnan(column)]
            column[np.isnan(column)] = float(np.median(finite)) if finite.size else 0.0
    profile = build_reference_profile(matrix, art_out.labels, list(schema.names), task,
                                      class_labels, options.profile_bins, labels=options.labels,
                                      scores=_probabilities(art_out.scores))
    for j, field in enumerate(schema.fields):
        entry = profile["features"][j]
        if field.kind == "category":
            k = len(field.categories or ())
            counts = np.bincount(matrix[:, j].astype(int), minlength=k)
            entry.update(kind="categorical", categories=list(field.categories or ()),
                         edges=[i + 0.5 for i in range(k - 1)],
                         proportions=[float(c) / matrix.shape[0] for c in counts])
        elif field.kind == "text":
            entry["kind"] = "word_count"
    return profile
