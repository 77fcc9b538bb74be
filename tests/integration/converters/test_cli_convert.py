"""`edgewise convert` from the command line: artifacts, manifests, the report and exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_wine
from sklearn.ensemble import GradientBoostingClassifier

from controller.app.cli import cli
from controller.cli.exit_codes import ExitCode
from edgewise_wire.manifest import Manifest


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("convert-cli")
    X, y = load_wine(return_X_y=True)
    joblib.dump(GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=0).fit(X, y),
                root / "gb.joblib")
    np.save(root / "X.npy", X)
    np.save(root / "y.npy", y)
    return root


def test_convert_writes_verified_artifacts_and_a_report(files: Path, tmp_path: Path,
                                                        keras_models: dict[str, Any],
                                                        digits: tuple[np.ndarray, np.ndarray]
                                                        ) -> None:
    X, y = digits
    keras_models["cnn"].save(tmp_path / "cnn.keras")
    np.save(tmp_path / "Ximg.npy", X[:200].reshape(-1, 8, 8, 1))
    np.save(tmp_path / "y.npy", y[:200])
    result = CliRunner().invoke(cli, [
        "convert", str(tmp_path / "cnn.keras"), "--sample", str(tmp_path / "Ximg.npy"),
        "--labels", str(tmp_path / "y.npy"), "--to", "onnx,tflite", "--quantize", "fp16,int8",
        "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    for line in ("onnx    float32", "tflite  float16", "tflite  int8-dynamic"):
        assert line in result.output
    assert "FAILED" not in result.output and "µs" in result.output
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(f"cnn.{p}.{f}{m}" for f, p in [
        ("onnx", "float32"), ("onnx", "int8-dynamic"), ("tflite", "float32"),
        ("tflite", "float16"), ("tflite", "int8-dynamic")] for m in ("", ".manifest.json"))
    manifest = Manifest.from_dict(json.loads(
        (tmp_path / "out" / "cnn.float16.tflite.manifest.json").read_text()))
    assert manifest.format == "tflite" and manifest.precision == "float16"
    assert manifest.artifact.size == (tmp_path / "out" / "cnn.float16.tflite").stat().st_size


def test_a_failed_artifact_has_its_exit_code_and_the_rest_are_written(files: Path,
                                                                      tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, [
        "convert", str(files / "gb.joblib"), "--sample", str(files / "X.npy"), "--to", "onnx",
        "--quantize", "int8", "--out", str(tmp_path), "--json"])
    assert result.exit_code == ExitCode.CONVERSION_FAILED, result.output
    report = json.loads(result.stdout)  # progress went to stderr: stdout is the JSON alone
    assert [(r["format"], r["precision"], r["ok"]) for r in report] == [
        ("onnx", "float32", True), ("onnx", "int8-dynamic", False)]
    assert "nothing to quantize" in report[1]["error"]
    assert (tmp_path / "gb.float32.onnx").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["--tolerance", "float17=1"], "unknown precision"),
    (["--tolerance", "abc"], "expected VALUE or PRECISION=VALUE"),
    (["--to", "coreml"], "unknown format 'coreml'"),
    (["--quantize", "int4"], "unknown precision 'int4'"),
    (["--verify-on", "tflite-micro"], "unknown runtime"),
])
def test_bad_options_are_usage_errors(files: Path, tmp_path: Path, args: list[str],
                                      message: str) -> None:
    result = CliRunner().invoke(cli, ["convert", str(files / "gb.joblib"), "--sample",
                                      str(files / "X.npy"), "--out", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_a_bad_sample_is_one_line_and_exit_1(files: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "narrow.npy", np.zeros((4, 3)))
    result = CliRunner().invoke(cli, ["convert", str(files / "gb.joblib"), "--sample",
                                      str(tmp_path / "narrow.npy"), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "3 columns but the model expects 13 features" in result.output


def test_progress_goes_to_stderr_and_quiet_silences_it(files: Path, tmp_path: Path) -> None:
    args = ["convert", str(files / "gb.joblib"), "--sample", str(files / "X.npy"), "--out",
            str(tmp_path), "--json"]
    loud = CliRunner().invoke(cli, args)
    assert loud.exit_code == 0, loud.output
    assert re.search(r"^\[\s*\d+\.\ds\] converting .*gb\.joblib to onnx", loud.stderr, re.M)
    assert json.loads(loud.stdout)[0]["ok"] is True
    quiet = CliRunner().invoke(cli, [*args, "--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr
    assert json.loads(quiet.stdout)[0]["ok"] is True
