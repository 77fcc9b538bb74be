"""Smoke conversions, one per estimator family, with whatever library versions run this script.

Usage: python compat_smoke.py

Run by tests/integration/converters/test_compat.py under the controller's Python (the newest
supported versions) and under the ``compat-oldest`` side environment (the oldest ones; see
docs/converters.md, "Compatibility"). Each family is fitted on a small synthetic problem,
converted the way Edgewise converts it (skl2onnx, ZipMap off; onnxmltools' converters registered
for XGBoost and LightGBM at ``ai.onnx.ml`` opset 3), run in onnxruntime and compared with the
library's own predictions. Prints one JSON object: {"versions": {...}, "families": {name:
{"ok": bool, "max_abs_diff"?: float, "error"?: str}}}. Standalone on purpose: no Edgewise here.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

PACKAGES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "xgboost", "xgboost-cpu",
            "lightgbm", "onnxmltools")


def _versions() -> dict[str, str]:
    out = {}
    for package in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    if "xgboost-cpu" in out:
        out["xgboost"] = out.pop("xgboost-cpu")
    return out


def _families() -> dict[str, Any]:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    families: dict[str, Any] = {
        "linear classifier": lambda: LogisticRegression(max_iter=500),
        "linear regressor": lambda: Ridge(),
        "tree ensemble classifier": lambda: RandomForestClassifier(n_estimators=10,
                                                                   random_state=0),
        "tree ensemble regressor": lambda: RandomForestRegressor(n_estimators=10,
                                                                 random_state=0),
        "pipeline with MLP": lambda: make_pipeline(StandardScaler(), MLPClassifier(
            hidden_layer_sizes=(8,), max_iter=300, random_state=0)),
    }
    try:
        import xgboost

        families["xgboost classifier"] = lambda: xgboost.XGBClassifier(n_estimators=10)
        families["xgboost regressor"] = lambda: xgboost.XGBRegressor(n_estimators=10)
    except ImportError:
        pass
    try:
        import lightgbm

        families["lightgbm classifier"] = lambda: lightgbm.LGBMClassifier(n_estimators=10,
                                                                           verbose=-1)
        families["lightgbm regressor"] = lambda: lightgbm.LGBMRegressor(n_estimators=10,
                                                                         verbose=-1)
    except ImportError:
        pass
    return families


def _register() -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    try:
        import xgboost
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

        update_registered_converter(xgboost.XGBClassifier, "XGBoostXGBClassifier",
                                    calculate_linear_classifier_output_shapes, convert_xgboost,
                                    options=options)
        update_registered_converter(xgboost.XGBRegressor, "XGBoostXGBRegressor",
                                    calculate_linear_regressor_output_shapes, convert_xgboost)
    except ImportError:
        pass
    try:
        import lightgbm
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        update_registered_converter(lightgbm.LGBMClassifier, "LightGbmLGBMClassifier",
                                    calculate_linear_classifier_output_shapes, convert_lightgbm,
                                    options=options)
        update_registered_converter(lightgbm.LGBMRegressor, "LightGbmLGBMRegressor",
                                    calculate_linear_regressor_output_shapes, convert_lightgbm)
    except ImportError:
        pass


def _smoke(name: str, make: Any) -> dict[str, Any]:
    import onnxruntime as ort
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    classify = "classifier" in name or "MLP" in name
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1) if classify else \
        X[:, 0] * 2.0 + X[:, 3]
    model = make().fit(X, y)
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    boosting = type(final).__module__.split(".")[0] in ("xgboost", "lightgbm")
    opset: Any = {"": 15, "ai.onnx.ml": 3} if boosting else None
    options = {id(final): {"zipmap": False}} if classify else None
    onx = convert_sklearn(model, initial_types=[("input", FloatTensorType([None, 6]))],
                          options=options, target_opset=opset)
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input": X})
    if classify:
        diff = float(np.abs(outputs[1] - model.predict_proba(X)).max())
        agree = float(np.mean(outputs[0].ravel() == model.predict(X)))
        return {"ok": diff < 1e-4 and agree == 1.0, "max_abs_diff": diff,
                "label_agreement": agree}
    diff = float(np.abs(outputs[0].ravel() - model.predict(X)).max())
    return {"ok": diff < 1e-3, "max_abs_diff": diff}


def main() -> int:
    warnings.filterwarnings("ignore")
    _register()
    families = {}
    for name, make in _families().items():
        try:
            families[name] = _smoke(name, make)
        except Exception as exc:  # report what the library said, per family
            text = " ".join(str(exc).split())[:300]
            families[name] = {"ok": False, "error": f"{type(exc).__name__}: {text}"}
    print(json.dumps({"versions": _versions(), "families": families}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
