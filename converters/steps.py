"""Checks on the steps of a scikit-learn model that no converter can turn into ONNX.

A pipeline holding a custom Python class or a function is only code: no converter can see inside
it, and the failure would otherwise surface deep in skl2onnx (or, worse, after a fallback made
a graph that skips it). These checks run before any route, and name the step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from converters.errors import UnsupportedModelError

# Libraries whose estimators the routes know (scikit-learn's own, and the boosting wrappers).
KNOWN_LIBRARIES = ("sklearn", "xgboost", "lightgbm", "imblearn")


def walk(estimator: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(step path, estimator) for the model and every step inside it, depth first.

    Paths read like ``pre/num/scaler``: the names given in Pipelines, ColumnTransformers and
    FeatureUnions; the top-level model has the path of its class name.
    """
    here = path or type(estimator).__name__
    yield here, estimator
    children: list[tuple[str, Any]] = []
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list):
        children = [(name, step) for name, step in steps]
    for attr in ("transformers_", "transformers", "transformer_list"):
        listed = getattr(estimator, attr, None)
        if isinstance(listed, list) and not children:
            children = [(item[0], item[1]) for item in listed
                        if isinstance(item, tuple) and len(item) >= 2]
            break
    for name, child in children:
        if child is None or isinstance(child, str):  # "drop", "passthrough"
            continue
        yield from walk(child, f"{path}/{name}" if path else str(name))


def check_steps(estimator: Any) -> None:
    """Refuse custom Python classes and FunctionTransformers with a function, naming the step."""
    top = type(estimator).__name__
    for path, step in walk(estimator):
        cls = type(step)
        library = cls.__module__.split(".")[0]
        where = f"step {path!r}" if path != top else top
        if cls.__name__ == "FunctionTransformer" and library == "sklearn":
            for attr in ("func", "inverse_func"):
                func = getattr(step, attr, None)
                if func is not None:
                    what = "a lambda" if getattr(func, "__name__", "") == "<lambda>" else \
                        f"the Python function {getattr(func, '__qualname__', func)!r}"
                    raise UnsupportedModelError(
                        f"{where} (FunctionTransformer)",
                        f"its {attr} is {what}, which no converter can translate to ONNX; "
                        f"replace it with a scikit-learn transformer or drop the step")
        elif library not in KNOWN_LIBRARIES and library != "catboost":
            raise UnsupportedModelError(
                f"{where} ({cls.__module__}.{cls.__qualname__})",
                "a custom Python class, whose code no converter can translate to ONNX; use "
                "scikit-learn transformers, or convert the model without that step")
