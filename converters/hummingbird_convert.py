"""scikit-learn → TFLite: hummingbird-ml (standard-op ONNX) → onnx2tf, both in side environments;
and hummingbird's graph on its own as the fallback ONNX route when skl2onnx fails.

skl2onnx writes trees and linear models as ``ai.onnx.ml`` ops that no TFLite converter reads.
hummingbird-ml rewrites them as tensor computations (GEMM, Gather, comparisons), which onnx2tf
can convert. The result is verified against the scikit-learn model like any artifact, which
matters here: hummingbird 0.4.12 predates scikit-learn 1.8 and gets some models wrong
(multiclass LogisticRegression normalises one-vs-rest instead of softmax), and the parity check
is what refuses those.

Supported: see SUPPORTED below and docs/converters.md. float32 and float16 only: int8 would
quantize tree thresholds.
"""

from __future__ import annotations

import pickle
import tempfile
import time
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from converters import envs
from converters.artifact import Candidate
from converters.errors import ConversionError, UnsupportedModelError
from converters.onnx_graph import (
    float64_to_float32,
    keep_outputs,
    load_model,
    onnx_bytes,
    with_flat_input,
    with_label_head,
)
from converters.onnx_tflite import onnx_to_tflite_many
from converters.source import Source

WORKER = Path(__file__).resolve().parent / "workers" / "hummingbird_export.py"
PRECISIONS = ("float32", "float16")
SUPPORTED = (
    "RandomForest and GradientBoosting classifiers, RandomForestRegressor, Ridge, and "
    "MLPClassifier after StandardScaler (verified); other tree ensembles and linear regressors "
    "hummingbird knows (DecisionTree, ExtraTrees, GradientBoostingRegressor, LinearRegression, "
    "Lasso) take the same path, unverified; LogisticRegression is refused by parity; float32 "
    "and float16"
)


def sklearn_to_onnx(estimator: Any, source: Source, sample: np.ndarray, *,
                    timeout: float = 600.0) -> Candidate:
    """hummingbird's standard-op graph as an ONNX artifact (a fallback route after skl2onnx)."""
    core, info, seconds = _hummingbird_core(estimator, source, sample, timeout)
    started = time.perf_counter()
    data = onnx_bytes(with_label_head(core, source.task, source.class_labels))
    return Candidate("onnx", "float32", data, {
        "converter": "hummingbird-ml", "converter_version": info["hummingbird"],
        "torch_version": info["torch"]}, seconds + time.perf_counter() - started)


def sklearn_to_tflite(estimator: Any, source: Source, sample: np.ndarray,
                      precisions: Sequence[str], *, timeout: float = 600.0) -> dict[str, Candidate]:
    """hummingbird → ONNX (probabilities or values only) → onnx2tf → TFLite, per precision."""
    for precision in precisions:
        if precision not in PRECISIONS:
            raise UnsupportedModelError(
                source.description, f"TFLite {precision} is not offered for scikit-learn models "
                "(hummingbird graphs compare features with tree split thresholds; int8 would move rows "
                "across splits), use float32 or float16", supported=SUPPORTED)
    core, info, seconds = _hummingbird_core(estimator, source, sample, timeout)
    made = onnx_to_tflite_many(onnx_bytes(core), precisions, sample,
                               description=source.description, timeout=timeout)
    return {precision: replace(candidate, converter={
        "converter": "hummingbird-ml+onnx2tf", "hummingbird_version": info["hummingbird"],
        "onnx2tf_version": candidate.converter.get("converter_version"),
    }, seconds=candidate.seconds + seconds) for precision, candidate in made.items()}


def _hummingbird_core(estimator: Any, source: Source, sample: np.ndarray,
                      timeout: float) -> tuple[Any, dict[str, Any], float]:
    """(graph with one flat float32 input and one output: probabilities or values, worker
    info, seconds), made by hummingbird-ml in its side environment."""
    envs.require_python("hummingbird")  # missing: fail before any work
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgewise-hummingbird-") as tmp:
        work = Path(tmp)
        with open(work / "model.pkl", "wb") as f:
            pickle.dump(without_random_state(estimator), f)
        np.save(work / "sample.npy", sample[:64].astype(np.float32))
        done = envs.run_in_env("hummingbird", [str(WORKER), str(work / "model.pkl"),
                                               str(work / "sample.npy"), str(work / "model.onnx")],
                               timeout=timeout)
        if done.returncode != 0:
            raise UnsupportedModelError(
                source.description, f"hummingbird-ml cannot convert it "
                f"({envs.stderr_reason(done)})", supported=SUPPORTED)
        info = envs.worker_report(done)
        graph = load_model((work / "model.onnx").read_bytes())
    outputs = [o.name for o in graph.graph.output]
    if source.task == "classification":
        wanted = [n for n in outputs if n != "variable"]
    else:
        wanted = [n for n in outputs if n == "variable"] or outputs[:1]
    if len(wanted) != 1:
        raise ConversionError(f"unexpected hummingbird outputs {outputs} for a {source.task} model")
    core = float64_to_float32(with_flat_input(keep_outputs(graph, wanted), (source.n_features,)))
    return core, info, time.perf_counter() - started


def without_random_state(estimator: Any) -> Any:
    """A deep copy with fitted RandomState/Generator attributes set to None.

    numpy 2 pickles a RandomState by class, which numpy 1.26 (the hummingbird environment)
    cannot unpickle; prediction never uses them.
    """
    copy = deepcopy(estimator)
    seen: set[int] = set()

    def scrub(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            for item in obj:
                scrub(item)
        elif isinstance(obj, np.ndarray) and obj.dtype == object:
            for item in obj.ravel():
                scrub(item)
        elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("sklearn"):
            tree = getattr(obj, "tree_", None)
            if tree is not None and hasattr(tree, "threshold"):
                _round_thresholds_down(tree)
            for key, value in vars(obj).items():
                if isinstance(value, (np.random.RandomState, np.random.Generator)):
                    setattr(obj, key, None)
                else:
                    scrub(value)

    scrub(copy)
    return copy


def _round_thresholds_down(tree: Any) -> None:
    """Store each split threshold as the largest float32 not above it.

    scikit-learn compares float32 features with float64 thresholds; hummingbird rounds the
    thresholds to the nearest float32, which can round up and send a row equal to neither
    across the split. For float32 x, ``x <= t`` holds exactly when ``x <= floor32(t)``.
    """
    thresholds = tree.threshold
    rounded = thresholds.astype(np.float32)
    too_high = rounded.astype(np.float64) > thresholds
    rounded[too_high] = np.nextafter(rounded[too_high], np.float32(-np.inf))
    thresholds[:] = rounded.astype(np.float64)
