"""Reading the files an operator hands the converter: a pickled model, a sample, labels.

Pickles run arbitrary code when loaded, so loading one logs a warning every time; the
controller must only unpickle files from people it trusts. Every failure becomes a
ModelFileError or SampleDataError naming the file and the reason, so the CLI can print it as is.
"""

from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from converters.deps import require
from converters.errors import ModelFileError, SampleDataError
from converters.validation import check_sample

log = logging.getLogger("edgewise.converters")

MODEL_SUFFIXES = (".pkl", ".pickle", ".joblib")
DATA_SUFFIXES = (".npy", ".csv", ".parquet")


def load_model_file(path: str | Path) -> object:
    """Unpickle a model saved with pickle or joblib (``.pkl``, ``.pickle``, ``.joblib``).

    Only for trusted files: unpickling executes whatever code the file asks for.
    """
    path = Path(path)
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise ModelFileError(
            path, f"unknown model file extension {path.suffix!r}; expected one of {MODEL_SUFFIXES}")
    if not path.is_file():
        raise ModelFileError(path, "no such file")
    joblib = require("joblib")
    exceptions = require("sklearn.exceptions")
    log.warning("loading %s: unpickling runs arbitrary code, only do this for trusted files", path)
    try:
        with warnings.catch_warnings():
            # a model pickled by another scikit-learn release may load and predict wrongly
            warnings.simplefilter("error", exceptions.InconsistentVersionWarning)
            model = joblib.load(path)
    except exceptions.InconsistentVersionWarning as exc:
        raise ModelFileError(path, f"step {exc.estimator_name} was pickled with scikit-learn "
                                   f"{exc.original_sklearn_version}, this is "
                                   f"{exc.current_sklearn_version}: re-save it under "
                                   f"{exc.current_sklearn_version} (or convert with "
                                   f"{exc.original_sklearn_version} installed)") from None
    except Exception as exc:  # a corrupt pickle can raise almost anything
        raise ModelFileError(path, f"not a readable pickle/joblib file "
                                   f"({type(exc).__name__}: {exc})") from exc
    if not callable(getattr(model, "predict", None)):
        raise ModelFileError(path, f"holds a {type(model).__name__}, not a model with predict()")
    return model


def load_table_file(path: str | Path) -> Any:
    """A sample that keeps its column names and types: a pandas DataFrame from ``.parquet`` or
    from a ``.csv`` with a header line; anything else as :func:`load_array_file` reads it.

    Mixed-type pipelines (converters/tabular.py) need the names and the string columns; numeric
    models take the DataFrame's values.
    """
    path = _data_path(path, "sample")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return load_array_file(path)
    if suffix == ".csv":
        rows = _read_csv(path, "sample")
        if all(_is_number(cell) for cell in rows[0]):  # no header: a plain numeric matrix
            return load_sample_file(path)
    pandas = _pandas(path, "sample")
    try:
        frame = pandas.read_parquet(path) if suffix == ".parquet" else pandas.read_csv(path)
    except Exception as exc:  # pandas and pyarrow raise many kinds
        raise SampleDataError(f"{path}: not a readable {suffix[1:]} table "
                              f"({type(exc).__name__}: {exc})") from exc
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise SampleDataError(f"{path}: sample holds no data rows")
    return frame


def _pandas(path: Path, what: str) -> Any:
    try:
        import pandas
    except ImportError:
        raise SampleDataError(f"{path}: reading a {what} table needs pandas (and pyarrow for "
                              f"parquet): pip install '.[tables]' in your Edgewise checkout") from None
    return pandas


def load_sample_file(path: str | Path) -> np.ndarray:
    """Read a sample (rows x features) from ``.npy`` or ``.csv`` as a finite float64 array.

    A CSV may start with a header line; it is recognised by holding a field that is not a number.
    """
    path = _data_path(path, "sample")
    if path.suffix.lower() == ".parquet":
        return check_sample(load_table_file(path), what=str(path))
    if path.suffix.lower() == ".npy":
        raw: Any = _load_npy(path, "sample")
    else:
        rows = _read_csv(path, "sample")
        if rows and not all(_is_number(cell) for cell in rows[0]):
            rows = rows[1:]
        if not rows:
            raise SampleDataError(f"{path}: sample holds no data rows")
        width = len(rows[0])
        for i, row in enumerate(rows):
            if len(row) != width:
                raise SampleDataError(
                    f"{path}: data row {i + 1} has {len(row)} fields, expected {width}")
            for j, cell in enumerate(row):
                if not _is_number(cell):
                    raise SampleDataError(
                        f"{path}: data row {i + 1}, column {j + 1}: {cell!r} is not a number")
        raw = np.array([[float(c) for c in row] for row in rows], dtype=np.float64)
    return check_sample(raw, what=str(path))


def load_array_file(path: str | Path) -> np.ndarray:
    """A sample for any model: like load_sample_file, but a ``.npy`` may also hold rows of a
    shape (e.g. images, rows x 8 x 8 x 1) for network models, which flatten them themselves."""
    path = _data_path(path, "sample")
    if path.suffix.lower() != ".npy":
        return load_sample_file(path)
    array = np.asarray(_load_npy(path, "sample"))
    if array.ndim <= 2:
        return check_sample(array, what=str(path))
    if array.dtype.kind not in "biuf":
        raise SampleDataError(f"{path}: sample must be numeric, got dtype {array.dtype}")
    if array.shape[0] == 0:
        raise SampleDataError(f"{path}: sample is empty")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise SampleDataError(f"{path}: sample must be finite: found NaN or infinity")
    return array


def load_labels_file(path: str | Path) -> np.ndarray:
    """Read labels (one per sample row) from ``.npy`` or a one-column ``.csv``.

    CSV values come back as int64 when all are integers, float64 when all are numbers, and as
    strings otherwise (e.g. class names). A first line that is not a number while the rest are
    is taken as a header.
    """
    path = _data_path(path, "labels")
    if path.suffix.lower() == ".parquet":
        frame = _pandas(path, "labels").read_parquet(path)
        if frame.shape[1] != 1:
            raise SampleDataError(f"{path}: labels table must have exactly one column, "
                                  f"has {frame.shape[1]}")
        array = frame.iloc[:, 0].to_numpy()
        if array.dtype == object:
            array = array.astype(str)
    elif path.suffix.lower() == ".npy":
        array = np.asarray(_load_npy(path, "labels"))
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise SampleDataError(f"{path}: labels must be 1-D, got shape {array.shape}")
    else:
        rows = _read_csv(path, "labels")
        if any(len(row) != 1 for row in rows):
            raise SampleDataError(f"{path}: labels CSV must have exactly one column per line")
        values = [row[0].strip() for row in rows]
        if len(values) > 1 and not _is_number(values[0]) and all(map(_is_number, values[1:])):
            values = values[1:]
        array = _typed(values)
    if array.shape[0] == 0:
        raise SampleDataError(f"{path}: labels file holds no values")
    return array


def _data_path(path: str | Path, what: str) -> Path:
    path = Path(path)
    if path.suffix.lower() not in DATA_SUFFIXES:
        raise SampleDataError(
            f"{path}: unknown {what} file extension {path.suffix!r}; expected one of {DATA_SUFFIXES}")
    if not path.is_file():
        raise SampleDataError(f"{path}: no such {what} file")
    return path


def _load_npy(path: Path, what: str) -> np.ndarray:
    with path.open("rb") as f:
        if f.read(6) != b"\x93NUMPY":  # else np.load would try to unpickle it
            raise SampleDataError(f"{path}: not a readable .npy file (no NumPy header)")
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except ValueError as exc:  # object arrays need pickle, which we refuse
        raise SampleDataError(f"{path}: {what} .npy file cannot be loaded without pickle "
                              f"(object array?) — {exc}") from exc
    except Exception as exc:
        raise SampleDataError(f"{path}: not a readable .npy file ({type(exc).__name__}: {exc})") from exc


def _read_csv(path: Path, what: str) -> list[list[str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [row for row in csv.reader(f) if row and any(c.strip() for c in row)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SampleDataError(f"{path}: not a readable CSV {what} file ({exc})") from exc
    if not rows:
        raise SampleDataError(f"{path}: {what} file is empty")
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _typed(values: list[str]) -> np.ndarray:
    """Strings → the narrowest of int64, float64 or str arrays that holds them all."""
    try:
        return np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        pass
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        return np.array(values, dtype=str)
