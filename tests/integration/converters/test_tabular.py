"""Mixed-type tabular pipelines: named typed inputs, the input schema, categorical profiles,
tables read from .csv and .parquet, and the pipelines no converter can take."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from controller.models.cli_convert import convert_file
from converters import UnsupportedModelError, convert, convert_one
from converters.errors import SampleDataError
from converters.loading import load_labels_file, load_table_file
from edgewise_wire import Manifest
from tests.harness.tabular import COLOURS, mixed_frame, mixed_pipeline

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def table():  # type: ignore[no-untyped-def]
    return mixed_frame()


def test_a_mixed_classifier_pipeline_converts_with_named_typed_inputs(table) -> None:  # type: ignore[no-untyped-def]
    frame, labels, _ = table
    model = mixed_pipeline(LogisticRegression(max_iter=500)).fit(frame, labels)
    result = convert_one(model, frame, name="mixed", labels=labels)
    manifest = Manifest.from_dict(json.loads(json.dumps(result.manifest.to_dict())))
    assert manifest == result.manifest
    assert [(i.name, i.dtype) for i in manifest.inputs] == [
        ("age", "float32"), ("income", "float32"), ("colour", "string"), ("size", "string"),
        ("note", "string")]
    schema = manifest.input_schema
    assert schema is not None
    assert [(f.name, f.kind, f.nullable) for f in schema.fields] == [
        ("age", "number", True), ("income", "number", True), ("colour", "category", False),
        ("size", "category", False), ("note", "text", False)]
    assert schema.fields[2].categories == COLOURS
    assert schema.fields[1].imputed == pytest.approx(frame["income"].mean())  # the imputer's
    assert manifest.parity["label_agreement"] == 1.0 and manifest.parity["max_abs_diff"] < 1e-4
    assert manifest.parity["artifact_accuracy"] == manifest.parity["source_accuracy"]
    smoke = manifest.smoke_tests[0]
    assert smoke.inputs[0] == [frame["age"][0], None, frame["colour"][0], frame["size"][0],
                               frame["note"][0]]  # row 0 has no income: imputed
    colour = manifest.reference_profile["features"][2]
    shares = [float(np.mean(frame["colour"] == c)) for c in COLOURS]
    assert colour["kind"] == "categorical" and colour["categories"] == list(COLOURS)
    assert colour["edges"] == [0.5, 1.5] and colour["proportions"] == pytest.approx(shares)
    assert result.report["route"] == "skl2onnx"


def test_a_mixed_regressor_pipeline_converts(table) -> None:  # type: ignore[no-untyped-def]
    frame, _, target = table
    model = mixed_pipeline(RandomForestRegressor(n_estimators=10, random_state=0))
    model.fit(frame, target)
    result = convert_one(model, frame, name="mixed-reg")
    assert result.manifest.task == "regression" and result.manifest.input_schema is not None
    assert result.manifest.parity["max_abs_diff"] < 1e-3


def test_tflite_and_int8_are_refused_for_named_inputs_with_the_reason(table) -> None:  # type: ignore[no-untyped-def]
    frame, labels, _ = table
    model = mixed_pipeline(LogisticRegression(max_iter=500)).fit(frame, labels)
    outcomes = convert(model, frame, name="m", formats=("onnx", "tflite"),
                       precisions=("float32", "int8-dynamic"))
    by = {(o.format, o.precision): o for o in outcomes}
    assert by[("onnx", "float32")].result is not None
    for key in (("tflite", "float32"), ("onnx", "int8-dynamic"), ("tflite", "int8-dynamic")):
        assert "not offered for pipelines with named, mixed-type inputs" in str(by[key].error)


def test_csv_and_parquet_samples_keep_names_and_types(table, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    frame, labels, _ = table
    model = mixed_pipeline(LogisticRegression(max_iter=500)).fit(frame, labels)
    model_file = tmp_path / "mixed.joblib"
    import joblib

    joblib.dump(model, model_file)
    frame.to_csv(tmp_path / "sample.csv", index=False)
    frame.to_parquet(tmp_path / "sample.parquet")
    pd.DataFrame({"y": labels}).to_parquet(tmp_path / "labels.parquet")
    np.save(tmp_path / "labels.npy", labels)
    for sample in ("sample.csv", "sample.parquet"):
        loaded = load_table_file(tmp_path / sample)
        assert list(loaded.columns) == list(frame.columns)
        assert loaded["colour"].tolist() == frame["colour"].tolist()
        (outcome,) = convert_file(model_file, tmp_path / sample, tmp_path / "labels.parquet",
                                  name="mixed", formats=["onnx"], precisions=["float32"],
                                  progress=None)
        assert outcome.error is None, outcome.error
        assert outcome.result.manifest.parity["source_accuracy"] > 0.5
    assert load_labels_file(tmp_path / "labels.parquet").tolist() == labels.tolist()


def test_numeric_csv_with_a_header_still_serves_plain_models(tmp_path: Path, iris) -> None:  # type: ignore[no-untyped-def]
    X, y = iris
    path = tmp_path / "iris.csv"
    pd.DataFrame(X, columns=["a", "b", "c", "d"]).to_csv(path, index=False)
    model = LogisticRegression(max_iter=500).fit(X, y)
    result = convert_one(model, load_table_file(path), name="iris")
    assert result.manifest.input_schema is None and result.manifest.n_features == 4


# -- refused before anything is registered, naming the step --------------------------------------

def test_a_lambda_in_a_function_transformer_is_refused_naming_the_step(iris) -> None:  # type: ignore[no-untyped-def]
    X, y = iris
    model = make_pipeline(FunctionTransformer(lambda v: v * 2),
                          LogisticRegression(max_iter=1000)).fit(X, y)
    with pytest.raises(UnsupportedModelError) as caught:
        convert_one(model, X, name="x")
    message = str(caught.value)
    assert "step 'functiontransformer' (FunctionTransformer)" in message
    assert "its func is a lambda" in message and "\n" not in message


class Doubler(StandardScaler):
    """A user's own transformer: a subclass, so scikit-learn accepts it in a pipeline."""

    def transform(self, X, copy=None):  # type: ignore[no-untyped-def]
        return super().transform(X) * 2


def test_a_custom_python_transformer_is_refused_naming_the_step(iris) -> None:  # type: ignore[no-untyped-def]
    X, y = iris
    model = make_pipeline(Doubler(), LogisticRegression()).fit(X, y)
    with pytest.raises(UnsupportedModelError, match=r"step 'doubler' \(.*Doubler\).*custom "
                                                    r"Python class"):
        convert_one(model, X, name="x")


def test_pandas_categoricals_fed_as_codes_are_refused(table) -> None:  # type: ignore[no-untyped-def]
    frame, labels, _ = table
    data = frame[["age", "colour"]].copy()
    data["colour"] = data["colour"].astype("category")
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features="from_dtype")
    model.fit(data, labels)
    sample = data.copy()  # the sample lacks a category the model was trained on
    sample["colour"] = pd.Categorical(sample["colour"].astype(str).replace("red", "blue"),
                                      categories=["blue", "green"])
    with pytest.raises(UnsupportedModelError, match=r"HistGradientBoostingClassifier \(column "
                                                    r"'colour'\).*pandas categorical"):
        convert_one(model, sample, name="x")


def test_missing_values_in_a_category_column_are_refused(table) -> None:  # type: ignore[no-untyped-def]
    frame, labels, _ = table
    model = mixed_pipeline(LogisticRegression(max_iter=500)).fit(frame, labels)
    holes = frame.copy()
    holes.loc[3, "colour"] = None
    with pytest.raises(SampleDataError, match="column 'colour' has 1 missing values; missing "
                                              "values in category and text columns are not "
                                              "supported"):
        convert_one(model, holes, name="x")


def test_a_sample_without_the_fitted_columns_is_refused(table) -> None:  # type: ignore[no-untyped-def]
    frame, labels, _ = table
    model = mixed_pipeline(LogisticRegression(max_iter=500)).fit(frame, labels)
    with pytest.raises(SampleDataError, match=r"lacks the column\(s\) \['note'\]"):
        convert_one(model, frame.drop(columns=["note"]), name="x")


def test_edgewise_convert_shows_the_winning_route_and_writes_the_schema(table, tmp_path: Path  # type: ignore[no-untyped-def]
                                                                        ) -> None:
    import joblib
    from click.testing import CliRunner
    from sklearn.ensemble import HistGradientBoostingClassifier

    from controller.app.cli import cli
    from converters.envs import find_python

    frame, labels, _ = table
    model = mixed_pipeline(LogisticRegression(max_iter=500)).fit(frame, labels)
    joblib.dump(model, tmp_path / "mixed.joblib")
    frame.to_parquet(tmp_path / "sample.parquet")
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "mixed.joblib"), "--sample",
                                      str(tmp_path / "sample.parquet"), "--out",
                                      str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.stdout)
    assert entry["attempts"][0]["route"] == "skl2onnx" and entry["attempts"][0]["ok"]
    written = json.loads((tmp_path / "out" / "mixed.float32.onnx.manifest.json").read_text())
    assert [f["name"] for f in written["input_schema"]["fields"]] == list(frame.columns)
    # a model whose first route fails: the table says which route won and why
    numeric = frame[["age"]].fillna(40.0).to_numpy()
    joblib.dump(HistGradientBoostingClassifier(max_iter=5).fit(numeric, labels),
                tmp_path / "hgb.joblib")
    np.save(tmp_path / "numeric.npy", numeric)
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "hgb.joblib"), "--sample",
                                      str(tmp_path / "numeric.npy"), "--out",
                                      str(tmp_path / "out")])
    if find_python("skl2onnx") is None and find_python("hummingbird") is None:
        assert result.exit_code == 1 and "no route verified; routes tried in order:" in \
            result.stdout
    elif "routes tried in order" in result.stdout:
        assert result.exit_code == 0, result.output
        assert "onnx float32: route " in result.stdout and " won; routes tried in order:" in \
            result.stdout
        assert "  skl2onnx: failed: skl2onnx failed" in result.stdout
