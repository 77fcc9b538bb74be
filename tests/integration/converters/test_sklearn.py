"""scikit-learn → ONNX: each supported model converts, reproduces, and describes itself."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import (
    GradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.semi_supervised import LabelSpreading
from sklearn.svm import SVC

from converters import (
    ConversionError,
    ConversionResult,
    ParityError,
    SampleDataError,
    UnsupportedModelError,
    convert_sklearn,
)
from edgewise_wire.manifest import Manifest

CLASSIFIERS = {
    "logreg": lambda: LogisticRegression(max_iter=5000),
    "forest": lambda: RandomForestClassifier(n_estimators=20, random_state=0),
    "gboost": lambda: GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0),
    "mlp": lambda: make_pipeline(StandardScaler(), MLPClassifier(
        hidden_layer_sizes=(16,), max_iter=1000, random_state=0)),
    "pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression()),
}
REGRESSORS = {
    "ridge": lambda: Ridge(alpha=1.0),
    "forest": lambda: RandomForestRegressor(n_estimators=20, random_state=0),
}


def run_artifact(result: ConversionResult, rows: Any) -> list[np.ndarray]:
    session = ort.InferenceSession(result.artifact, providers=["CPUExecutionProvider"])
    m = result.manifest
    names = [m.label_output] + ([m.score_output] if m.score_output else [])
    return session.run(names, {m.inputs[0].name: np.asarray(rows, dtype=np.float32)})


def check_common(result: ConversionResult, n_features: int) -> None:
    m = result.manifest
    assert Manifest.from_dict(m.to_dict()) == m
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m  # JSON-safe throughout
    assert m.artifact.sha256 == hashlib.sha256(result.artifact).hexdigest()
    assert m.artifact.size == len(result.artifact)
    assert m.version == 0 and m.format == "onnx" and m.precision == "float32"
    assert m.inputs[0].name == "input" and m.inputs[0].shape == (None, n_features)
    assert m.inputs[0].dtype == "float32" and m.n_features == n_features
    assert m.parity["max_abs_diff"] <= m.parity["tolerance"]
    assert m.parity["label_agreement"] == 1.0
    assert m.smoke_tolerance >= 1e-4
    assert "ai.onnx" in m.opset and "" not in m.opset
    assert m.created_at.endswith("Z")
    assert result.report["artifact_bytes"] == len(result.artifact)
    # The smoke tests reproduce in a fresh onnxruntime session.
    (smoke,) = m.smoke_tests
    got = run_artifact(result, smoke.inputs)
    if m.task == "classification":
        assert np.ravel(got[0]).tolist() == smoke.expected_labels
    else:  # multi-threaded tree ensembles may differ in the last bit: compare as the agent does
        assert np.max(np.abs(np.ravel(got[0]) - smoke.expected_labels)) <= m.smoke_tolerance
    if smoke.expected_scores is not None:
        assert np.max(np.abs(got[1] - np.asarray(smoke.expected_scores))) <= m.smoke_tolerance


@pytest.mark.parametrize("kind", sorted(CLASSIFIERS))
def test_classifiers_convert_with_parity(kind: str, wine: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = wine
    est = CLASSIFIERS[kind]().fit(X, y)
    result = convert_sklearn(est, X, name=f"wine-{kind}", labels=y)
    check_common(result, X.shape[1])
    m = result.manifest
    assert m.task == "classification"
    assert (m.label_output, m.score_output) == ("label", "probabilities")
    assert m.class_labels == (0, 1, 2) and all(type(c) is int for c in m.class_labels)
    assert {o.name: o.dtype for o in m.outputs} == {"label": "int64", "probabilities": "float32"}
    assert m.parity["n"] == len(X)
    assert m.parity["artifact_accuracy"] == pytest.approx(m.parity["source_accuracy"])
    assert m.feature_names == tuple(f"f{i}" for i in range(X.shape[1]))
    assert len(m.smoke_tests[0].inputs) == 8
    assert m.source["framework"] == "sklearn" and m.source["estimator"]


@pytest.mark.parametrize("kind", sorted(REGRESSORS))
def test_regressors_convert_with_parity(kind: str,
                                        diabetes: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = diabetes
    est = REGRESSORS[kind]().fit(X, y)
    result = convert_sklearn(est, X, name=f"diabetes-{kind}", labels=y)
    check_common(result, X.shape[1])
    m = result.manifest
    assert m.task == "regression"
    assert (m.label_output, m.score_output, m.class_labels) == ("variable", None, None)
    assert m.outputs[0].dtype == "float32"
    assert m.smoke_tests[0].expected_scores is None
    assert all(isinstance(v, float) for v in m.smoke_tests[0].expected_labels)
    assert m.parity["artifact_mae"] == pytest.approx(m.parity["source_mae"], abs=1e-3)
    assert m.reference_profile["prediction"]["kind"] == "numeric"


def test_string_class_labels_end_to_end() -> None:
    data = load_iris()
    y = data.target_names[data.target]
    est = make_pipeline(StandardScaler(), LogisticRegression()).fit(data.data, y)
    result = convert_sklearn(est, data.data, name="iris", labels=y,
                             feature_names=data.feature_names)
    check_common(result, 4)
    m = result.manifest
    assert m.class_labels == ("setosa", "versicolor", "virginica")
    assert {o.name: o.dtype for o in m.outputs}["label"] == "string"
    assert set(m.smoke_tests[0].expected_labels) <= set(m.class_labels)
    assert m.feature_names == tuple(data.feature_names)
    assert m.source["estimator"] == "Pipeline(StandardScaler, LogisticRegression)"
    prediction = m.reference_profile["prediction"]
    assert prediction["labels"] == ["setosa", "versicolor", "virginica"]
    assert sum(prediction["proportions"]) == pytest.approx(1.0)
    assert m.parity["source_accuracy"] > 0.9


def test_agent_runtime_accepts_the_artifact(tmp_path: Path,
                                            iris: tuple[np.ndarray, np.ndarray]) -> None:
    """The device side's own smoke test passes on what the converter produced."""
    from edge_agent.runtime import OnnxRuntimeModel, smoke_test

    X, y = iris
    result = convert_sklearn(LogisticRegression(max_iter=1000).fit(X, y), X, name="iris")
    path = tmp_path / "model.onnx"
    path.write_bytes(result.artifact)
    smoke_test(OnnxRuntimeModel(path, result.manifest))


# skl2onnx reads SVC.probA_, which scikit-learn 1.9 deprecates.
@pytest.mark.filterwarnings("ignore:Attribute `prob:FutureWarning")
def test_classifier_without_predict_proba_has_no_score_output(
        iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    result = convert_sklearn(SVC().fit(X, y), X, name="svc")
    assert result.manifest.score_output is None
    assert result.manifest.smoke_tests[0].expected_scores is None
    assert result.manifest.parity["label_agreement"] == 1.0


def test_smoke_rows_are_spread_and_capped(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    est = LogisticRegression(max_iter=1000).fit(X, y)
    inputs = convert_sklearn(est, X, name="a", smoke_count=3).manifest.smoke_tests[0].inputs
    assert inputs == X[[0, 74, 149]].astype(np.float32).astype(float).tolist()
    small = convert_sklearn(est, X[:5], name="b", smoke_count=50)
    assert len(small.manifest.smoke_tests[0].inputs) == 5


def test_target_opset_is_recorded(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    result = convert_sklearn(LogisticRegression(max_iter=1000).fit(X, y), X, name="a",
                             target_opset=15)
    assert result.manifest.opset["ai.onnx"] == 15


def test_parity_failure_carries_the_figures(iris: tuple[np.ndarray, np.ndarray]) -> None:
    """float32 ONNX never matches float64 sklearn exactly, so a zero tolerance must fail."""
    X, y = iris
    est = LogisticRegression(max_iter=1000).fit(X, y)
    with pytest.raises(ParityError) as info:
        convert_sklearn(est, X, name="strict", tolerance=0.0)
    err = info.value
    assert err.n == len(X) and err.tolerance == 0.0
    assert 0.0 < err.max_abs_diff < 1e-5
    assert err.label_agreement == 1.0
    assert f"{err.max_abs_diff:.3g}" in str(err) and "label_agreement=1.0000" in str(err)


def test_regression_parity_failure_hints_at_float32_resolution(
        diabetes: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = diabetes
    with pytest.raises(ParityError, match="float32 resolution"):
        convert_sklearn(Ridge().fit(X, y * 1e4), X, name="big")


class NotAModel:
    def predict(self, X: Any) -> Any:
        return X


@pytest.mark.parametrize("estimator, named", [
    (object(), "object"),
    (NotAModel(), "NotAModel"),
    (LogisticRegression(), "LogisticRegression"),  # not fitted
])
def test_unsupported_objects_are_named(estimator: Any, named: str,
                                       iris: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(UnsupportedModelError, match=named) as info:
        convert_sklearn(estimator, iris[0], name="x")
    assert "Supported:" in str(info.value)


def test_estimator_without_converter_is_named(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    with pytest.raises(UnsupportedModelError, match="LabelSpreading") as info:
        convert_sklearn(LabelSpreading().fit(X, y), X, name="x")
    assert "no converter" in str(info.value)
    assert info.value.estimator == "LabelSpreading"


def test_clusterers_are_refused(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = iris
    with pytest.raises(UnsupportedModelError, match="KMeans.*classifiers and regressors"):
        convert_sklearn(KMeans(n_clusters=2, n_init=1, random_state=0).fit(X), X, name="x")


def test_multi_output_regressors_are_refused(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = iris
    with pytest.raises(UnsupportedModelError, match="single-output"):
        convert_sklearn(Ridge().fit(X[:, :2], X[:, 2:]), X[:, :2], name="x")


@pytest.fixture(scope="module")
def fitted_iris() -> BaseEstimator:
    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000).fit(X, y)


@pytest.mark.parametrize("sample, message", [
    (np.zeros((5, 3)), "has 3 columns but the model expects 4"),
    (np.zeros(4), "must be 2-D"),
    (np.array([[1.0, 2.0, np.nan, 4.0]]), "NaN or infinity"),
    (np.array([[1.0, 2.0, np.inf, 4.0]]), "NaN or infinity"),
    (np.zeros((0, 4)), "empty"),
    (np.array([["a", "b", "c", "d"]]), "must be numeric"),
])
def test_bad_samples_are_refused(sample: np.ndarray, message: str,
                                 fitted_iris: BaseEstimator) -> None:
    with pytest.raises(SampleDataError, match=message):
        convert_sklearn(fitted_iris, sample, name="x")


def test_labels_and_feature_names_must_match_the_sample(fitted_iris: BaseEstimator) -> None:
    X = load_breast_cancer().data[:10, :4]
    with pytest.raises(SampleDataError, match="10 rows"):
        convert_sklearn(fitted_iris, X, name="x", labels=np.zeros(9))
    with pytest.raises(SampleDataError, match="expected 4 feature names"):
        convert_sklearn(fitted_iris, X, name="x", feature_names=["a", "b"])


@pytest.mark.parametrize("kwargs", [
    {"name": ""}, {"name": "x", "tolerance": -1.0}, {"name": "x", "smoke_count": 0},
    {"name": "x", "profile_bins": 0},
])
def test_bad_arguments_raise_value_error(kwargs: dict[str, Any],
                                         fitted_iris: BaseEstimator) -> None:
    with pytest.raises(ValueError):
        convert_sklearn(fitted_iris, load_iris().data, **kwargs)


@pytest.mark.parametrize("cast", [float, bool])
def test_float_and_bool_classes_are_listed_as_the_ints_onnx_emits(cast: type) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    est = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y.astype(cast))
    m = convert_sklearn(est, X, name="bc").manifest
    assert m.class_labels == (0, 1) and all(type(c) is int for c in m.class_labels)
    assert set(m.smoke_tests[0].expected_labels) <= {0, 1}


def test_fitted_feature_names_are_used_when_none_given(
        iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    est = LogisticRegression(max_iter=1000).fit(X, y)
    est.feature_names_in_ = np.array(["a", "b", "c", "d"], dtype=object)  # as if fit on a frame
    m = convert_sklearn(est, X, name="iris").manifest
    assert m.feature_names == ("a", "b", "c", "d")
    assert [f["name"] for f in m.reference_profile["features"]] == ["a", "b", "c", "d"]


def test_missing_skl2onnx_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                               fitted_iris: BaseEstimator) -> None:
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # makes `import skl2onnx` fail
    with pytest.raises(ConversionError, match=r"pip install '\.\[controller\]'"):
        convert_sklearn(fitted_iris, load_iris().data, name="x")


def test_importing_converters_is_cheap() -> None:
    code = ("import sys, converters; "
            "print(sorted(m for m in ('sklearn', 'skl2onnx', 'onnx', 'onnxruntime', 'joblib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
