"""ONNX neural-network graphs → TFLite through onnx2tf, run in its own environment.

onnx2tf pins TensorFlow 2.19, onnx 1.19 and numpy 1.26, so it lives in a side environment
(converters.envs, ``onnx2tf``) and is called as a subprocess. It rewrites its input file in
place, so it always works on a copy in a scratch directory. It cannot convert ``ai.onnx.ml``
ops (skl2onnx's trees, linear classifiers, ZipMap): those graphs are refused up front with the
ops named.

Precisions: float32 and float16 (always written by onnx2tf), int8-dynamic (``-odrqt``),
int8-static (``-oiqt``, full integer with int8 input and output, calibrated on the sample).
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from converters import envs
from converters.artifact import Candidate
from converters.errors import ConversionError, UnsupportedModelError
from converters.onnx_graph import load_model, real_inputs, uses_ml_ops

ONNX2TF_VERSION = envs.ENVS["onnx2tf"].requirements[0].split("==")[1]
OUTPUT_SUFFIX = {"float32": "float32", "float16": "float16",
                 "int8-dynamic": "dynamic_range_quant", "int8-static": "full_integer_quant"}
CALIBRATION_ROWS = 200


def onnx_to_tflite(core: bytes, precision: str, sample: np.ndarray, *, description: str,
                   timeout: float = 600.0) -> Candidate:
    """Convert an ONNX graph with one flat float input and one output to TFLite."""
    return onnx_to_tflite_many(core, [precision], sample, description=description,
                               timeout=timeout)[precision]


def onnx_to_tflite_many(core: bytes, precisions: Sequence[str], sample: np.ndarray, *,
                        description: str, timeout: float = 600.0) -> dict[str, Candidate]:
    """One onnx2tf run writing every precision asked for (it loads TensorFlow once)."""
    for precision in precisions:
        if precision not in OUTPUT_SUFFIX:
            raise ValueError(f"onnx2tf cannot produce precision {precision!r}")
    model = load_model(core)
    ml_ops = uses_ml_ops(model)
    if ml_ops:
        raise UnsupportedModelError(
            description, f"its ONNX graph uses ai.onnx.ml ops ({', '.join(ml_ops)}), which "
            "onnx2tf cannot convert to TFLite",
            supported="neural-network graphs; for scikit-learn models the hummingbird path "
                      "(see docs/converters.md)")
    if len(model.graph.output) != 1:
        raise ConversionError(f"onnx2tf input must have one output, got "
                              f"{[o.name for o in model.graph.output]}")
    input_name = real_inputs(model)[0].name
    envs.require_python("onnx2tf")  # missing: fail before any work
    started = time.perf_counter()
    results: dict[str, Candidate] = {}
    with tempfile.TemporaryDirectory(prefix="edgewise-onnx2tf-") as tmp:
        work = Path(tmp)
        (work / "model.onnx").write_bytes(core)  # onnx2tf rewrites this copy in place
        command = ["-m", "onnx2tf.onnx2tf", "-i", str(work / "model.onnx"),
                   "-o", str(work / "out"), "-n", "-kat", input_name]
        if "int8-dynamic" in precisions:
            command.append("-odrqt")
        if "int8-static" in precisions:
            calibration = work / "calibration.npy"
            np.save(calibration, sample[:CALIBRATION_ROWS].astype(np.float32))
            command += ["-oiqt", "-cind", input_name, str(calibration), "[0.0]", "[1.0]"]
        done = envs.run_in_env("onnx2tf", command, cwd=work, timeout=timeout)
        seconds = time.perf_counter() - started
        for precision in precisions:
            result = work / "out" / f"model_{OUTPUT_SUFFIX[precision]}.tflite"
            if done.returncode != 0 or not result.is_file():
                raise ConversionError(f"onnx2tf failed to convert {description} ({precision}): "
                                      f"{_reason(done.stdout + done.stderr)}")
            results[precision] = Candidate(
                "tflite", precision, result.read_bytes(),
                {"converter": "onnx2tf", "converter_version": ONNX2TF_VERSION}, seconds)
    return results


def _reason(output: str) -> str:
    """The most telling lines of onnx2tf's output (it prints tracebacks and colour codes)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    exceptions = [line for line in lines if re.match(r"^[A-Za-z.]*(Error|Exception):", line)]
    errors = [line for line in lines if "Error" in line or "ERROR" in line]
    picked = exceptions[-2:] or (errors or lines)[-3:]
    text = " | ".join(picked)
    for code in ("\x1b[0m", "\x1b[31m", "\x1b[33m", "\x1b[32m"):
        text = text.replace(code, "")
    return text[:600] or "no output"
