"""Gradient-boosting libraries: XGBoost and LightGBM through skl2onnx, CatBoost by its own export.

XGBoost's and LightGBM's scikit-learn wrappers are scikit-learn estimators, so they take the
scikit-learn plan (alone or as the last step of a Pipeline); skl2onnx only needs their converters,
which onnxmltools provides and :func:`register_boosting_converters` registers once. CatBoost
writes ONNX itself (``save_model(format="onnx")``); :func:`catboost_plan` verifies that graph
like any other artifact. All three emit ``ai.onnx.ml`` tree ensembles, which no TFLite converter
reads: TFLite is refused for them with that reason.

Install with ``pip install '.[boosting]'`` in the checkout (xgboost, lightgbm, catboost, onnxmltools).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from converters.artifact import Candidate
from converters.deps import require
from converters.errors import UnsupportedModelError
from converters.source import Source, SourceOutput
from converters.validation import check_labels, check_sample

SUPPORTED_BOOSTING = (
    "XGBClassifier/XGBRegressor and LGBMClassifier/LGBMRegressor (via onnxmltools), "
    "CatBoostClassifier/CatBoostRegressor (its own ONNX export) on numeric features; ONNX only"
)
TFLITE_REFUSAL = ("gradient-boosted trees become ai.onnx.ml TreeEnsemble ops, which no TFLite "
                  "converter reads; deploy the ONNX artifact")

_registered = False


def register_boosting_converters() -> None:
    """Teach skl2onnx the XGBoost and LightGBM estimators (those installed; once per process)."""
    global _registered
    if _registered:
        return
    _registered = True
    skl2onnx = require("skl2onnx")
    shapes = require("skl2onnx.common.shape_calculator")
    options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    try:
        import xgboost
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    except ImportError:
        pass
    else:
        skl2onnx.update_registered_converter(
            xgboost.XGBClassifier, "XGBoostXGBClassifier",
            shapes.calculate_linear_classifier_output_shapes, convert_xgboost, options=options)
        skl2onnx.update_registered_converter(
            xgboost.XGBRegressor, "XGBoostXGBRegressor",
            shapes.calculate_linear_regressor_output_shapes, convert_xgboost)
    try:
        import lightgbm
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    except ImportError:
        pass
    else:
        skl2onnx.update_registered_converter(
            lightgbm.LGBMClassifier, "LightGbmLGBMClassifier",
            shapes.calculate_linear_classifier_output_shapes, convert_lightgbm, options=options)
        skl2onnx.update_registered_converter(
            lightgbm.LGBMRegressor, "LightGbmLGBMRegressor",
            shapes.calculate_linear_regressor_output_shapes, convert_lightgbm)


def is_boosting_wrapper(model: Any) -> bool:
    """An XGBoost or LightGBM scikit-learn wrapper (converted by onnxmltools' converters)."""
    return type(model).__module__.split(".")[0] in ("xgboost", "lightgbm")


def is_catboost(model: Any) -> bool:
    return any(c.__module__.split(".")[0] == "catboost" for c in type(model).__mro__)


def catboost_source(model: Any, sample: Any, labels: Any) -> tuple[Source, np.ndarray,
                                                                     np.ndarray | None]:
    """(Source, flat float64 sample, labels) for a fitted CatBoostClassifier/Regressor."""
    catboost = require("catboost")
    description = type(model).__name__
    if not model.is_fitted():
        raise UnsupportedModelError(description, "it is not fitted; call fit() first",
                                    supported=SUPPORTED_BOOSTING)
    if model.get_cat_feature_indices():
        raise UnsupportedModelError(
            description, "it was trained with cat_features, which CatBoost's ONNX export does "
                         "not support; one-hot or ordinal encode those columns before CatBoost",
            supported=SUPPORTED_BOOSTING)
    task = "classification" if isinstance(model, catboost.CatBoostClassifier) else "regression"
    matrix = check_sample(sample, len(model.feature_names_) if model.feature_names_ else None)
    truth = check_labels(labels, matrix.shape[0]) if labels is not None else None
    classes = None
    if task == "classification":
        values = np.asarray(model.classes_)
        if values.dtype.kind in "bf":
            values = values.astype(np.int64)
        classes = tuple(v.item() if isinstance(v, np.generic) else v for v in values)

    def predict(rows: np.ndarray) -> SourceOutput:
        if classes is not None:
            proba = np.asarray(model.predict_proba(rows))
            return SourceOutput(np.asarray(classes)[proba.argmax(axis=1)], proba)
        return SourceOutput(np.asarray(model.predict(rows), dtype=np.float64).reshape(-1))

    source = Source(kind="catboost", framework="catboost", framework_version=catboost.__version__,
                    description=description, task=task, row_shape=(matrix.shape[1],),
                    class_labels=classes, predict=predict, model=model)
    return source, matrix, truth


def catboost_to_onnx(source: Source) -> Candidate:
    """CatBoost's own ONNX export, its ZipMap replaced by the probability tensor."""
    catboost = require("catboost")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgewise-catboost-") as tmp:
        path = Path(tmp) / "model.onnx"
        source.model.save_model(str(path), format="onnx",
                                export_parameters={"onnx_domain": "ai.catboost",
                                                   "onnx_model_version": 1})
        data = path.read_bytes()
    from converters.onnx_graph import load_model, onnx_bytes, without_zipmap

    data = onnx_bytes(without_zipmap(load_model(data)))
    return Candidate("onnx", "float32", data, {"converter": "catboost.save_model(format='onnx')",
                                               "converter_version": catboost.__version__},
                     time.perf_counter() - started)
