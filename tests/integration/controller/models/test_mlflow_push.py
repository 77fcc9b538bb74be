"""`edgewise models push` from MLflow: a real MLflow tracking store and model registry (SQLite
and files in tmp) holding a registered scikit-learn model, pushed by models:/NAME/VERSION,
models:/NAME@ALIAS and runs:/ID/PATH to a real controller over HTTP; the lineage lands in the
manifest and in `models show`; URIs that do not resolve and flavours without a converter get
one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import click
import pytest
from click.testing import CliRunner

from controller.app.cli import cli
from tests.harness.api_server import serving
from tests.harness.web_fleet import make_controller

mlflow = pytest.importorskip("mlflow", reason="mlflow-skinny is not installed "
                                              "(pip install -e '.[mlflow]')")
pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An MLflow store with iris registered as version 1 (alias champion) and a run holding a
    model of a flavour Edgewise has no converter for."""
    import os

    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    features, target = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(features, target)
    experiment = mlflow.create_experiment("edgewise", artifact_location=str(tmp / "artifacts"))
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_metric("accuracy", float(model.score(features, target)))
        mlflow.log_param("max_iter", 500)
        mlflow.sklearn.log_model(model, name="model", registered_model_name="iris-mlflow",
                                 signature=infer_signature(features, model.predict(features)),
                                 input_example=features.iloc[::15],
                                 serialization_format="cloudpickle")
    client = mlflow.MlflowClient()
    client.set_registered_model_alias("iris-mlflow", "champion", "1")
    odd = tmp / "odd"
    odd.mkdir()
    (odd / "MLmodel").write_text("artifact_path: odd\nflavors:\n  spacy:\n    spacy_version: 3.7\n")
    with mlflow.start_run(experiment_id=experiment) as other:
        mlflow.log_artifacts(str(odd), artifact_path="odd")
    features.to_csv(tmp / "sample.csv", index=False)
    yield {"uri": uri, "run_id": run.info.run_id,
           "accuracy": float(model.score(features, target)), "odd_run": other.info.run_id,
           "model": model, "features": features, "sample": tmp / "sample.csv"}
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    c = make_controller(tmp_path_factory.mktemp("controller"))
    with serving(c) as url:
        yield url
    c.db.dispose()


def run(url: str, store: dict[str, Any], *args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, ["--controller", url, *args, "--tracking-uri", store["uri"]]
                              if args[:2] == ("models", "push") else
                              ["--controller", url, *args])


def test_push_by_registered_version_alias_and_run(url: str, store: dict[str, Any]) -> None:
    pushed = run(url, store, "models", "push", "models:/iris-mlflow/1", "--json", "-q")
    assert pushed.exit_code == 0, pushed.output
    first = json.loads(pushed.output)
    assert first["model"] == "iris-mlflow" and first["version"] == 1
    by_alias = run(url, store, "models", "push", "models:/iris-mlflow@champion",
                   "--sample", str(store["sample"]), "-q")
    assert by_alias.exit_code == 0, by_alias.output
    assert "registered iris-mlflow:2" in by_alias.output
    by_run = run(url, store, "models", "push", f"runs:/{store['run_id']}/model",
                 "--name", "iris-run", "--mlflow-write-back", "-q")
    assert by_run.exit_code == 0, by_run.output
    # written back to the run: the Edgewise version, its parity, the conversion report
    mlrun = mlflow.MlflowClient(tracking_uri=store["uri"]).get_run(store["run_id"])
    assert mlrun.data.tags["edgewise.iris-run.version"] == "1"
    assert float(mlrun.data.tags["edgewise.iris-run.parity_label_agreement"]) == 1.0
    report = mlflow.artifacts.load_dict(f"{mlrun.info.artifact_uri}/edgewise/iris-run-v1.json")
    assert report["version"] == 1 and report["parity"]["label_agreement"] == 1.0

    summary = json.loads(run(url, store, "models", "show", "iris-mlflow", "--json").output)
    lineage = {v["version"]: v["source"]["mlflow"] for v in summary["versions"]}
    assert lineage[1]["run_id"] == store["run_id"] and lineage[1]["registered_version"] == 1
    assert lineage[1]["flavour"] == "sklearn" and lineage[1]["registered_model"] == "iris-mlflow"
    assert lineage[1]["metrics"]["accuracy"] == pytest.approx(store["accuracy"])
    assert lineage[1]["sample"] == "input example (10 rows)"
    assert lineage[2]["alias"] == "champion" and lineage[2]["sample"] == "--sample sample.csv"
    # the artifact checked against the whole data set agrees with the MLflow model
    assert summary["versions"][1]["parity"]["n"] == len(store["features"])
    assert summary["versions"][1]["parity"]["label_agreement"] == 1.0
    text = run(url, store, "models", "show", "iris-mlflow").output
    assert "LINEAGE (MLflow)" in text
    assert f"v1: models:/iris-mlflow/1 (sklearn), iris-mlflow v1, run {store['run_id']}" in text
    assert "@champion" in text and "run metrics: accuracy" in text
    run_summary = json.loads(run(url, store, "models", "show", "iris-run", "--json").output)
    assert run_summary["versions"][0]["source"]["mlflow"]["run_id"] == store["run_id"]


def test_write_back_needs_an_mlflow_uri(url: str, store: dict[str, Any]) -> None:
    result = run(url, store, "models", "push", str(store["sample"]), "--sample",
                 str(store["sample"]), "--mlflow-write-back", "-q")
    assert result.exit_code == 2 and "needs an MLflow URI" in result.output


@pytest.mark.parametrize("uri, code, fragment", [
    ("models:/no-such-model/1", 1, "does not resolve at sqlite:///"),
    ("models:/iris-mlflow/99", 1, "does not resolve"),
    ("models:/iris-mlflow@nobody", 1, "does not resolve"),
    ("runs:/0123456789abcdef/model", 1, "does not resolve"),
    ("models:/", 2, "is not an MLflow model URI"),
    ("no/such/file.joblib", 2, "does not exist"),
], ids=["unknown-model", "unknown-version", "unknown-alias", "unknown-run", "malformed",
        "missing-file"])
def test_what_does_not_resolve_gets_one_line(url: str, store: dict[str, Any], uri: str,
                                             code: int, fragment: str) -> None:
    result = run(url, store, "models", "push", uri, "-q")
    assert result.exit_code == code, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output
    if code == 1:
        [line] = [ln for ln in result.output.splitlines() if ln.strip()]
        assert line.startswith("error: ")


def test_a_flavour_without_a_converter_gets_one_line(url: str, store: dict[str, Any]) -> None:
    result = run(url, store, "models", "push", f"runs:/{store['odd_run']}/odd", "-q")
    assert result.exit_code == 1, result.output
    [line] = [ln for ln in result.output.splitlines() if ln.strip()]
    assert "flavour spacy has no Edgewise converter; supported flavours: sklearn" in line
