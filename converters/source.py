"""A source model seen the same way whatever framework it comes from.

Every converter compares an artifact with its source on the user's sample, so each framework
adapter (scikit-learn, Keras, PyTorch, ONNX, TFLite) reduces its model to a ``Source``: what it
is, what it predicts (labels and scores on flat float rows), and the shape of one row.

Edgewise artifacts always take flat rows (``rows x features``, the wire format the agent
validates); a model whose own input is shaped (an 8x8x1 image) gets a reshape built into the
artifact, and ``row_shape`` records the original shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converters.errors import SampleDataError, UnsupportedModelError
from converters.validation import check_sample

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class SourceOutput:
    """Predictions on a batch: labels (or values) one per row, and class scores when known."""

    labels: np.ndarray
    scores: np.ndarray | None = None


@dataclass
class Source:
    """A loaded model, ready to be converted and compared with its artifacts."""

    kind: str  # "sklearn" | "keras" | "torch" | "onnx" | "tflite"
    framework: str
    framework_version: str
    description: str
    task: str
    row_shape: tuple[int, ...]
    class_labels: tuple[Any, ...] | None
    predict: Callable[[np.ndarray], SourceOutput]  # flat rows (float64) → predictions
    model: Any = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return math.prod(self.row_shape)

    def source_dict(self) -> dict[str, Any]:
        """The manifest's ``source`` entries (converter fields are added per artifact)."""
        d: dict[str, Any] = {"framework": self.framework,
                             "framework_version": self.framework_version,
                             "model": self.description}
        if self.kind == "sklearn":
            d["estimator"] = self.description  # the key convert_sklearn has always written
        if len(self.row_shape) > 1:
            d["input_shape"] = list(self.row_shape)
        return d


def outputs_to_predictions(raw: np.ndarray, task: str,
                           class_labels: Sequence[Any] | None) -> SourceOutput:
    """A network's raw output (rows x K) → labels and scores.

    Classification: the scores are the output as is (probabilities or logits), the label is the
    class with the highest score, named by ``class_labels`` (indices when None). Regression: one
    value per row from a (rows,) or (rows, 1) output.
    """
    raw = np.asarray(raw)
    if raw.ndim == 1:
        raw = raw.reshape(-1, 1)
    if raw.ndim != 2:
        raise UnsupportedModelError(f"a model with output shape {raw.shape}",
                                    "only (rows, classes) or (rows, 1) outputs are supported",
                                    supported=SUPPORTED_NN)
    if task == "regression":
        if raw.shape[1] != 1:
            raise UnsupportedModelError(f"a regressor with {raw.shape[1]} outputs per row",
                                        "only single-output regressors are supported",
                                        supported=SUPPORTED_NN)
        return SourceOutput(raw[:, 0].astype(np.float64), None)
    labels = np.asarray(class_labels if class_labels is not None else range(raw.shape[1]))
    return SourceOutput(labels[np.argmax(raw, axis=1)], raw.astype(np.float64))


SUPPORTED_NN = (
    "Keras models and SavedModels, PyTorch modules (with an example input), TorchScript and "
    "torch.export files, and ONNX files, each with one float input (rows x features, or rows "
    "of a fixed shape such as 8x8x1) and one output: class scores (rows x classes, 2 or more) "
    "for classifiers, or one value per row for regressors"
)


def infer_task(n_outputs: int, task: str | None) -> str:
    """``task`` when given, else classification for 2+ outputs and regression for 1."""
    if task is not None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if task == "classification" and n_outputs < 2:
            raise UnsupportedModelError(
                "a classifier with a single output", "emit one score per class (e.g. a 2-unit "
                "softmax for a binary problem), so the label is the arg-max", supported=SUPPORTED_NN)
        return task
    return "classification" if n_outputs >= 2 else "regression"


def default_class_labels(n_classes: int, labels: np.ndarray | None,
                         given: Sequence[Any] | None) -> tuple[Any, ...]:
    """Class names for a network's K outputs: given, or the K distinct sample labels, or 0..K-1."""
    if given is not None:
        if len(given) != n_classes:
            raise SampleDataError(f"{len(given)} class labels given for a model with "
                                  f"{n_classes} outputs")
        return tuple(_plain(x) for x in given)
    if labels is not None:
        distinct = np.unique(labels)
        if len(distinct) == n_classes:
            return tuple(_plain(x) for x in distinct)
    return tuple(range(n_classes))


def flatten_sample(sample: Any, row_shape: Sequence[int], *, what: str = "sample") -> np.ndarray:
    """The sample as flat float64 rows for a model whose rows have ``row_shape``.

    Accepts rows already flat (rows x prod(row_shape)) or shaped like the model's input.
    """
    array = np.asarray(sample)
    row_shape = tuple(int(d) for d in row_shape)
    width = math.prod(row_shape)
    if array.ndim >= 2 and tuple(array.shape[1:]) == row_shape:
        array = array.reshape(array.shape[0], width)
    elif array.ndim == 2 and array.shape[1] != width:
        shape_text = "x".join(map(str, row_shape))
        raise SampleDataError(f"{what} has {array.shape[1]} columns but the model expects "
                              f"{width} features per row (input shape {shape_text})")
    elif array.ndim > 2:
        shape_text = "x".join(map(str, row_shape))
        raise SampleDataError(f"{what} has rows of shape {tuple(array.shape[1:])} but the model "
                              f"expects rows of shape {shape_text} (or {width} flat values)")
    return check_sample(array, width, what=what)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
