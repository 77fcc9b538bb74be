"""scikit-learn → ONNX: convert, prove parity in onnxruntime, and draft the manifest.

The artifact is only worth shipping if it gives the same answers as the model the data
scientist validated, so every conversion runs the sample through both and refuses to return an
artifact that disagrees (ParityError). The manifest records the figures, the smoke tests the
device re-runs before activating, and the reference profile it monitors drift against.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from converters.deps import require
from converters.errors import ConversionError, SampleDataError, UnsupportedModelError
from converters.onnx_model import OnnxRunner, opset_versions, tensor_specs
from converters.parity import ParityFigures, classifier_parity, quality_figures, regressor_parity
from converters.profile import build_reference_profile
from converters.result import ConversionResult
from converters.validation import check_labels, check_sample
from edgewise_wire.manifest import ArtifactRef, Manifest, SmokeTest, TensorSpec

log = logging.getLogger("edgewise.converters")

INPUT_NAME = "input"
MAX_SMOKE_ROWS = 1000  # SmokeTest.from_dict's limit


def convert_sklearn(estimator: Any, sample: np.ndarray, *, name: str,
                    labels: np.ndarray | None = None,
                    feature_names: Sequence[str] | None = None, tolerance: float = 1e-4,
                    smoke_count: int = 8, profile_bins: int = 10,
                    target_opset: int | None = None) -> ConversionResult:
    """Convert a fitted scikit-learn classifier/regressor (or Pipeline) to a verified ONNX artifact.

    ``sample`` is representative input (rows x features): parity is measured on it, smoke tests
    and the drift reference profile are drawn from it. Parity compares sklearn on the sample as
    given with the artifact on the sample cast to float32, because that is what a device feeds
    it. ``labels`` (optional, one per row) add source and artifact accuracy (or MAE) to the
    parity figures. ``feature_names`` default to the estimator's ``feature_names_in_`` or
    ``f0, f1, ...``.

    Raises UnsupportedModelError, SampleDataError or ParityError; ValueError for bad arguments.
    """
    started = time.perf_counter()
    _check_arguments(name, tolerance, smoke_count, profile_bins, target_opset)
    task = _check_estimator(estimator)
    description = describe_estimator(estimator)
    matrix = check_sample(sample, getattr(estimator, "n_features_in_", None))
    n_rows, n_features = matrix.shape
    truth = check_labels(labels, n_rows) if labels is not None else None
    names = _feature_names(feature_names, estimator, n_features)
    has_proba = task == "classification" and hasattr(estimator, "predict_proba")

    source_pred, source_proba = _predict_source(estimator, matrix, has_proba, description)
    model = _to_onnx(estimator, n_features, description, target_opset)
    artifact: bytes = model.SerializeToString()
    inputs, outputs = tensor_specs(model.graph.input), tensor_specs(model.graph.output)
    label_output, score_output = _output_names(outputs, task, has_proba)

    sample32 = matrix.astype(np.float32)
    wanted = [label_output] + ([score_output] if score_output else [])
    runner = OnnxRunner(artifact)
    artifact_pred, artifact_proba = _split(runner.run(sample32, wanted))

    figures: ParityFigures
    if task == "classification":
        figures = classifier_parity(source_pred, artifact_pred, source_proba, artifact_proba,
                                    tolerance)
    else:
        figures = regressor_parity(source_pred, artifact_pred, tolerance)
    parity: dict[str, Any] = figures.as_dict()
    if truth is not None:
        parity.update(quality_figures(task, truth, source_pred, artifact_pred))

    class_labels = _class_labels(estimator, outputs, label_output) if task == "classification" \
        else None
    rows = np.unique(np.linspace(0, n_rows - 1, min(smoke_count, n_rows)).round().astype(int))
    # The smoke batch is run on its own, exactly as the device will run it.
    smoke_pred, smoke_proba = _split(runner.run(sample32[rows], wanted))
    smoke = SmokeTest(
        inputs=sample32[rows].astype(np.float64).tolist(),
        expected_labels=smoke_pred.tolist(),
        expected_scores=smoke_proba.astype(np.float64).tolist() if smoke_proba is not None else None,
    )
    sklearn = require("sklearn")
    skl2onnx = require("skl2onnx")
    manifest = Manifest(
        model=name, version=0, format="onnx", task=task, inputs=inputs, outputs=outputs,
        label_output=label_output, score_output=score_output, class_labels=class_labels,
        feature_names=tuple(names), artifact=ArtifactRef.describe(artifact),
        smoke_tests=(smoke,), smoke_tolerance=max(tolerance * 10, 1e-4), precision="float32",
        source={"framework": "sklearn", "framework_version": sklearn.__version__,
                "estimator": description, "converter": "skl2onnx",
                "converter_version": skl2onnx.__version__},
        opset=opset_versions(model),
        parity=parity,
        reference_profile=build_reference_profile(sample32.astype(np.float64), artifact_pred,
                                                  names, task, class_labels, profile_bins,
                                                  labels=truth, scores=artifact_proba),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    seconds = time.perf_counter() - started
    log.info("converted %s (%s) to ONNX: %d bytes in %.2fs, max_abs_diff=%.3g",
             name, description, len(artifact), seconds, figures.max_abs_diff)
    report = {"seconds": round(seconds, 3), "artifact_bytes": len(artifact),
              "estimator": description, "task": task,
              "parity": {**parity, "tied_labels_excused": figures.ties}}
    return ConversionResult(artifact=artifact, manifest=manifest, report=report)


def describe_estimator(estimator: Any) -> str:
    """A readable one-line description, e.g. ``Pipeline(StandardScaler, LogisticRegression)``."""
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and all(isinstance(s, tuple) and len(s) == 2 for s in steps):
        inner = ", ".join("passthrough" if step in (None, "passthrough") else
                          describe_estimator(step) for _, step in steps)
        return f"{type(estimator).__name__}({inner})"
    cls = type(estimator)
    if cls.__module__ == "builtins" or cls.__module__.startswith("sklearn."):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_arguments(name: str, tolerance: float, smoke_count: int, profile_bins: int,
                     target_opset: int | None) -> None:
    if not isinstance(name, str) or not name or len(name) > 128:
        raise ValueError(f"name must be a non-empty string of at most 128 characters, got {name!r}")
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
    if not 1 <= smoke_count <= MAX_SMOKE_ROWS:
        raise ValueError(f"smoke_count must be between 1 and {MAX_SMOKE_ROWS}, got {smoke_count}")
    if profile_bins < 1:
        raise ValueError(f"profile_bins must be at least 1, got {profile_bins}")
    if target_opset is not None and target_opset < 1:
        raise ValueError(f"target_opset must be a positive opset number, got {target_opset}")


def _check_estimator(estimator: Any) -> str:
    """Return the task ("classification"/"regression") or raise UnsupportedModelError."""
    base = require("sklearn.base")
    validation = require("sklearn.utils.validation")
    exceptions = require("sklearn.exceptions")
    if not isinstance(estimator, base.BaseEstimator):
        raise UnsupportedModelError(describe_estimator(estimator), "not a scikit-learn estimator")
    description = describe_estimator(estimator)
    if base.is_classifier(estimator):
        task = "classification"
    elif base.is_regressor(estimator):
        task = "regression"
    else:
        raise UnsupportedModelError(
            description, "only classifiers and regressors can be deployed, not transformers or "
                         "clusterers")
    try:
        validation.check_is_fitted(estimator)
    except exceptions.NotFittedError:
        raise UnsupportedModelError(description, "it is not fitted; call fit() first") from None
    return task


def _feature_names(given: Sequence[str] | None, estimator: Any, n_features: int) -> list[str]:
    if given is None:
        fitted = getattr(estimator, "feature_names_in_", None)
        given = [str(x) for x in fitted] if fitted is not None else None
    if given is None:
        return [f"f{i}" for i in range(n_features)]
    names = [str(x) for x in given]
    if len(names) != n_features:
        raise SampleDataError(f"expected {n_features} feature names (one per sample column), "
                              f"got {len(names)}")
    return names


def _predict_source(estimator: Any, matrix: np.ndarray, has_proba: bool,
                    description: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The source model's predictions (and probabilities) on the sample."""
    try:
        with warnings.catch_warnings():
            # Fitted on a DataFrame, predicting on an array: harmless here, noisy in logs.
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            pred = np.asarray(estimator.predict(matrix))
            proba = np.asarray(estimator.predict_proba(matrix)) if has_proba else None
    except Exception as exc:
        raise ConversionError(f"{description} failed to predict on the sample: "
                              f"{type(exc).__name__}: {exc}") from exc
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    if pred.ndim != 1:
        raise UnsupportedModelError(description, f"it predicts {pred.shape[1:]} values per row; "
                                                 "only single-output models are supported")
    return pred, proba


def _final_step(estimator: Any) -> Any:
    while isinstance(getattr(estimator, "steps", None), list) and estimator.steps:
        estimator = estimator.steps[-1][1]
    return estimator


def opsets_for(final: Any, target_opset: int | None) -> int | dict[str, int] | None:
    """skl2onnx's target opset; XGBoost and LightGBM converters (onnxmltools) write
    ``ai.onnx.ml`` opset 3 and refuse a newer one."""
    from converters.boosting import is_boosting_wrapper

    if not is_boosting_wrapper(final):
        return target_opset
    return {"": target_opset or require("skl2onnx").get_latest_tested_opset_version(),
            "ai.onnx.ml": 3}


def _to_onnx(estimator: Any, n_features: int, description: str,
             target_opset: int | None) -> Any:
    """Run skl2onnx with a float input named ``input`` and ZipMap disabled on the classifier.

    ZipMap would turn probabilities into a sequence of maps, which the agent cannot read; the
    option is keyed by the final step's id so it also reaches a classifier inside a Pipeline.
    """
    skl2onnx = require("skl2onnx")
    data_types = require("skl2onnx.common.data_types")
    base = require("sklearn.base")
    final = _final_step(estimator)
    options = {id(final): {"zipmap": False}} if base.is_classifier(final) else None
    from converters.boosting import register_boosting_converters

    register_boosting_converters()
    try:
        return skl2onnx.convert_sklearn(
            estimator, initial_types=[(INPUT_NAME, data_types.FloatTensorType([None, n_features]))],
            options=options, target_opset=opsets_for(final, target_opset))
    except Exception as exc:  # skl2onnx raises RuntimeError, ValueError, NotImplementedError...
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        reason = ("skl2onnx has no converter for it" if "MissingShapeCalculator" in type(exc).__name__
                  or "MissingConverter" in type(exc).__name__ else "skl2onnx failed")
        cause = exc.__cause__ or exc.__context__
        if "Expected an int, got a boolean" in str(cause):
            from converters.skl2onnx_env import BROKEN_WITH, WORKS_WITH

            protobuf = require("google.protobuf").__version__
            first_line = (f"skl2onnx {require('skl2onnx').__version__} is broken with the "
                          f"installed protobuf {protobuf}, as with any {BROKEN_WITH}; it works "
                          f"with {WORKS_WITH}, the skl2onnx side environment "
                          f"({first_line[:120]})")
        raise UnsupportedModelError(description, f"{reason} ({type(exc).__name__}: {first_line})"
                                    ) from exc


def _class_labels(estimator: Any, outputs: Sequence[TensorSpec],
                  label_output: str) -> tuple[Any, ...]:
    """``classes_`` as plain Python values, typed like the artifact's label output.

    skl2onnx emits int64 labels for float or bool classes (scikit-learn only accepts integral
    floats as classes), so those become ints: the device compares what the artifact emits with
    this list, and 0 == False only holds in some languages.
    """
    classes = np.asarray(estimator.classes_)
    dtype = next(o.dtype for o in outputs if o.name == label_output)
    if dtype == "int64" and classes.dtype.kind in "bf":
        classes = classes.astype(np.int64)
    return tuple(classes.tolist())


def _split(results: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """(labels or values as 1-D, scores or None) from an OnnxRunner result."""
    labels = results[0][:, 0] if results[0].ndim == 2 and results[0].shape[1] == 1 else results[0]
    return labels, (results[1] if len(results) > 1 else None)


def _output_names(outputs: Sequence[TensorSpec], task: str,
                  has_proba: bool) -> tuple[str, str | None]:
    """(label_output, score_output): skl2onnx names them "label"/"probabilities" or "variable"."""
    names = [o.name for o in outputs]
    if task == "regression":
        return ("variable" if "variable" in names else names[0]), None
    label = "label" if "label" in names else names[0]
    if not has_proba:
        return label, None
    others = [n for n in names if n != label]
    if "probabilities" in others:
        return label, "probabilities"
    if not others:
        raise ConversionError(f"the ONNX graph has no probability output (outputs: {names})")
    return label, others[0]
