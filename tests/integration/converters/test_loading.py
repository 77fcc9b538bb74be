"""Reading model, sample and label files: good files load, bad ones say what is wrong."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from converters import (
    ModelFileError,
    SampleDataError,
    load_labels_file,
    load_model_file,
    load_sample_file,
)


@pytest.fixture(scope="module")
def model() -> LogisticRegression:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    return LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))


@pytest.mark.parametrize("suffix", [".pkl", ".pickle", ".joblib"])
def test_model_files_load_with_a_warning(suffix: str, model: LogisticRegression, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / f"model{suffix}"
    if suffix == ".joblib":
        joblib.dump(model, path)
    else:
        path.write_bytes(pickle.dumps(model))
    with caplog.at_level(logging.WARNING, logger="edgewise.converters"):
        loaded = load_model_file(path)
    assert isinstance(loaded, LogisticRegression)
    assert np.array_equal(loaded.coef_, model.coef_)
    assert any("arbitrary code" in r.message and r.levelno == logging.WARNING
               for r in caplog.records)


def test_corrupt_pickle_is_a_model_file_error(model: LogisticRegression, tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model)[:200])
    with pytest.raises(ModelFileError, match="not a readable pickle") as info:
        load_model_file(path)
    assert info.value.path == str(path)


def test_text_file_is_a_model_file_error(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_text("this is not a pickle\n")
    with pytest.raises(ModelFileError, match="model.pkl"):
        load_model_file(path)


def test_pickle_of_something_else_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError, match="holds a dict, not a model"):
        load_model_file(path)


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="unknown model file extension '.onnx'"):
        load_model_file(tmp_path / "model.onnx")
    with pytest.raises(ModelFileError, match="no such file"):
        load_model_file(tmp_path / "missing.joblib")


def test_sample_npy_and_csv(tmp_path: Path) -> None:
    data = np.arange(12, dtype=np.int32).reshape(4, 3)
    np.save(tmp_path / "s.npy", data)
    loaded = load_sample_file(tmp_path / "s.npy")
    assert loaded.dtype == np.float64 and np.array_equal(loaded, data)

    (tmp_path / "h.csv").write_text("a,b,c\n1,2,3\n4.5,5,-6e1\n\n")
    assert load_sample_file(tmp_path / "h.csv").tolist() == [[1, 2, 3], [4.5, 5, -60]]
    (tmp_path / "n.csv").write_text("1,2\n3,4\n")
    assert load_sample_file(tmp_path / "n.csv").tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("name, content, message", [
    ("bad.csv", "a,b\n1,x\n", r"data row 1, column 2: 'x' is not a number"),
    ("ragged.csv", "1,2\n3\n", "data row 2 has 1 fields, expected 2"),
    ("nan.csv", "1,2\n3,nan\n", "NaN or infinity"),
    ("header.csv", "a,b\n", "no data rows"),
    ("empty.csv", "", "empty"),
    ("sample.txt", "1,2\n", "unknown sample file extension"),
])
def test_bad_sample_files(name: str, content: str, message: str, tmp_path: Path) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(SampleDataError, match=message):
        load_sample_file(tmp_path / name)


def test_bad_npy_samples(tmp_path: Path) -> None:
    np.save(tmp_path / "one_d.npy", np.zeros(3))
    with pytest.raises(SampleDataError, match="must be 2-D"):
        load_sample_file(tmp_path / "one_d.npy")
    np.save(tmp_path / "objects.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    with pytest.raises(SampleDataError, match="without pickle"):
        load_sample_file(tmp_path / "objects.npy")
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(SampleDataError, match="not a readable .npy"):
        load_sample_file(tmp_path / "junk.npy")
    with pytest.raises(SampleDataError, match="no such sample file"):
        load_sample_file(tmp_path / "missing.npy")


@pytest.mark.parametrize("content, expected, kind", [
    ("0\n1\n2\n", [0, 1, 2], "i"),
    ("y\n0\n1\n", [0, 1], "i"),
    ("1.5\n2\n", [1.5, 2.0], "f"),
    ("setosa\nvirginica\n", ["setosa", "virginica"], "U"),
])
def test_labels_csv(content: str, expected: list[object], kind: str, tmp_path: Path) -> None:
    (tmp_path / "y.csv").write_text(content)
    labels = load_labels_file(tmp_path / "y.csv")
    assert labels.tolist() == expected and labels.dtype.kind == kind


def test_labels_npy_and_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "y.npy", np.array([["a"], ["b"]]))
    assert load_labels_file(tmp_path / "y.npy").tolist() == ["a", "b"]
    np.save(tmp_path / "y2.npy", np.zeros((2, 2)))
    with pytest.raises(SampleDataError, match="must be 1-D"):
        load_labels_file(tmp_path / "y2.npy")
    (tmp_path / "y.csv").write_text("1,2\n")
    with pytest.raises(SampleDataError, match="exactly one column"):
        load_labels_file(tmp_path / "y.csv")
