"""The skl2onnx route in its side environment (protobuf < 5), tried when the in-process one fails.

skl2onnx 1.20 writes Python booleans into the integer attributes of the tree ensembles it makes
for HistGradientBoosting*; protobuf 7 refuses them ("Unable to create node
'TreeEnsembleClassifier'"), protobuf 4 stores them as 0 and 1. The ``skl2onnx`` environment
(converters.envs) pins the working versions and runs workers/skl2onnx_export.py on a pickle of the
model; the graph comes back and is verified here like any other candidate.
"""

from __future__ import annotations

import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

from converters import envs
from converters.artifact import Candidate
from converters.errors import UnsupportedModelError
from converters.hummingbird_convert import without_random_state
from converters.source import Source

WORKER = Path(__file__).resolve().parent / "workers" / "skl2onnx_export.py"
BROKEN_WITH = "protobuf >= 5 (the booleans in tree attributes)"
WORKS_WITH = "skl2onnx 1.20.0 with onnx 1.19.1 and protobuf 4.25.5"


def sklearn_to_onnx_in_env(estimator: Any, source: Source, *,
                           timeout: float = 600.0) -> Candidate:
    envs.require_python("skl2onnx")  # missing: fail before any work
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgewise-skl2onnx-") as tmp:
        work = Path(tmp)
        with open(work / "model.pkl", "wb") as f:
            pickle.dump(without_random_state(estimator), f)
        done = envs.run_in_env("skl2onnx", [str(WORKER), str(work / "model.pkl"),
                                            str(source.n_features), str(work / "model.onnx")],
                               timeout=timeout)
        if done.returncode != 0:
            raise UnsupportedModelError(
                source.description, f"skl2onnx in its side environment cannot convert it "
                f"({envs.stderr_reason(done)})")
        info = envs.worker_report(done)
        data = (work / "model.onnx").read_bytes()
    return Candidate("onnx", "float32", data, {
        "converter": "skl2onnx", "converter_version": info["skl2onnx"],
        "environment": f"skl2onnx side environment (onnx {info['onnx']}, "
                       f"protobuf {info['protobuf']})"}, time.perf_counter() - started)
