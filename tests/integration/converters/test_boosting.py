"""XGBoost, LightGBM and CatBoost models: ONNX with parity, TFLite refused with the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from converters import UnsupportedModelError, convert, convert_one
from converters.api import load_model_path
from converters.errors import ModelFileError

xgboost = pytest.importorskip("xgboost")
lightgbm = pytest.importorskip("lightgbm")
catboost = pytest.importorskip("catboost")

CLASSIFIERS = {
    "xgboost": lambda: xgboost.XGBClassifier(n_estimators=15, max_depth=3),
    "lightgbm": lambda: lightgbm.LGBMClassifier(n_estimators=15, verbose=-1),
    "catboost": lambda: catboost.CatBoostClassifier(iterations=15, verbose=0,
                                                    allow_writing_files=False),
}
REGRESSORS = {
    "xgboost": lambda: xgboost.XGBRegressor(n_estimators=15, max_depth=3),
    "lightgbm": lambda: lightgbm.LGBMRegressor(n_estimators=15, verbose=-1),
    "catboost": lambda: catboost.CatBoostRegressor(iterations=15, verbose=0,
                                                   allow_writing_files=False),
}


@pytest.mark.parametrize("library", sorted(CLASSIFIERS))
def test_classifiers_convert_with_parity_and_refuse_tflite(library: str, wine: Any) -> None:
    X, y = wine
    model = CLASSIFIERS[library]().fit(X, y)
    onnx, tflite = convert(model, X, name=library, labels=y, formats=("onnx", "tflite"))
    assert onnx.error is None, onnx.error
    manifest = onnx.result.manifest
    assert manifest.parity["label_agreement"] == 1.0 and manifest.parity["max_abs_diff"] < 1e-4
    assert manifest.class_labels == (0, 1, 2) and manifest.score_output is not None
    assert manifest.source["attempts"][-1]["ok"] is True
    assert "TreeEnsemble ops, which no TFLite converter reads" in str(tflite.error)


@pytest.mark.parametrize("library", sorted(REGRESSORS))
def test_regressors_convert_with_parity(library: str, diabetes: Any) -> None:
    X, y = diabetes
    model = REGRESSORS[library]().fit(X, y)
    result = convert_one(model, X, name=library, labels=y)
    assert result.manifest.task == "regression"
    assert result.manifest.parity["max_abs_diff"] < 1e-3
    assert result.manifest.parity["artifact_mae"] == pytest.approx(
        result.manifest.parity["source_mae"], abs=1e-3)


def test_a_pipeline_ending_in_xgboost_and_a_pickled_catboost_file(iris: Any,
                                                                  tmp_path: Path) -> None:
    X, y = iris
    pipeline = make_pipeline(StandardScaler(), xgboost.XGBClassifier(n_estimators=5)).fit(X, y)
    assert convert_one(pipeline, X, name="p").manifest.parity["label_agreement"] == 1.0
    path = tmp_path / "cb.joblib"
    joblib.dump(CLASSIFIERS["catboost"]().fit(X, y), path)
    model, kind = load_model_path(path)
    assert kind == "catboost"
    assert convert_one(path, X, name="cb").manifest.source["framework"] == "catboost"


def test_catboost_with_categorical_features_is_refused_with_the_reason(iris: Any) -> None:
    pd = pytest.importorskip("pandas")
    X, y = iris
    data = pd.DataFrame({"a": X[:, 0], "b": X[:, 1],
                         "long": np.where(X[:, 2] > 3, "yes", "no")})
    model = catboost.CatBoostClassifier(iterations=5, verbose=0, allow_writing_files=False,
                                        cat_features=["long"]).fit(data, y)
    with pytest.raises(UnsupportedModelError, match="cat_features"):
        convert_one(model, data, name="x")


def test_a_pickle_from_another_scikit_learn_release_is_refused_naming_the_step(
        iris: Any, tmp_path: Path) -> None:
    X, y = iris
    path = tmp_path / "old.pkl"
    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), path)
    current = sklearn.__version__.encode()
    older = b"0.0.0"[:len(current)].ljust(len(current), b"0")  # same length: pickle framing
    path.write_bytes(path.read_bytes().replace(current, older))
    with pytest.raises(ModelFileError) as caught:
        convert_one(path, X, name="x")
    message = str(caught.value)
    assert "step LogisticRegression was pickled with scikit-learn 0.0" in message
    assert f"this is {sklearn.__version__}" in message and "\n" not in message
