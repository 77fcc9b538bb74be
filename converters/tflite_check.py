"""Loading and running TFLite artifacts the way a device will, to verify them before they ship.

``ai-edge-litert`` runs in this process; ``tflite-runtime`` 2.14 (numpy < 2, older op versions)
runs in its own environment (converters.envs) through ``converters/workers/tflite_run.py``.
Either way the artifact takes flat float rows (quantized inputs are quantized with the tensor's
own scale and zero point) and hands back its single output as float.
"""

from __future__ import annotations

import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from converters.deps import require
from converters.errors import ConversionError
from converters.workers.tflite_run import BatchRunner

RUNTIMES = ("ai-edge-litert", "tflite-runtime")
WORKER = Path(__file__).resolve().parent / "workers" / "tflite_run.py"


def litert_version() -> str:
    try:
        return f"ai-edge-litert=={version('ai-edge-litert')}"
    except PackageNotFoundError:
        return "ai-edge-litert"


class TfliteRunner:
    """An ai-edge-litert interpreter over in-memory TFLite bytes, one thread, default delegates
    (XNNPACK), as the agent runs it."""

    def __init__(self, artifact: bytes) -> None:
        interpreter = require("ai_edge_litert.interpreter")
        try:
            self._runner = BatchRunner(interpreter.Interpreter(model_content=artifact,
                                                               num_threads=1))
        except Exception as exc:  # the interpreter raises RuntimeError/ValueError freely
            raise ConversionError(f"ai-edge-litert cannot load the TFLite model: {exc}") from exc

    @property
    def input_detail(self) -> dict[str, Any]:
        return dict(self._runner.input)

    @property
    def output_detail(self) -> dict[str, Any]:
        return dict(self._runner.output)

    def run(self, rows: np.ndarray) -> np.ndarray:
        try:
            return self._runner.run(np.asarray(rows, dtype=np.float32))
        except Exception as exc:
            raise ConversionError(f"ai-edge-litert failed to run the TFLite model: {exc}") from exc


def run_in_tflite_runtime(artifact: bytes, rows: np.ndarray, *,
                          timeout: float = 120.0) -> tuple[np.ndarray, str]:
    """Run ``rows`` through the artifact under tflite-runtime 2.14; (output, "name==version")."""
    from converters import envs  # here: `python -m converters.envs` must not find it loaded

    envs.require_python("tflite-runtime")  # missing: fail before any work
    with tempfile.TemporaryDirectory(prefix="edgewise-tflite-") as tmp:
        model, rows_file, out = Path(tmp, "m.tflite"), Path(tmp, "x.npy"), Path(tmp, "y.npy")
        model.write_bytes(artifact)
        np.save(rows_file, np.asarray(rows, dtype=np.float32))
        done = envs.run_in_env("tflite-runtime", [str(WORKER), str(model), str(rows_file),
                                                  str(out), "--interpreter", "tflite-runtime"],
                               timeout=timeout)
        if done.returncode != 0:
            reason = _last_line(done.stderr) or f"exit code {done.returncode}"
            raise ConversionError(f"tflite-runtime 2.14 cannot run this artifact: {reason}. "
                                  f"Devices on tflite-runtime need a float32/float16 artifact "
                                  f"or ai-edge-litert")
        runtime = envs.worker_report(done)["runtime"]
        return np.load(out), str(runtime)


def tflite_ops(artifact: bytes) -> dict[str, int]:
    """Op name → highest version used, read from the model's flatbuffer (no interpreter)."""
    schema = require("ai_edge_litert.schema_py_generated")
    try:
        model = schema.Model.GetRootAs(artifact, 0)
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        ops: dict[str, int] = {}
        for i in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(i)
            builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
            name = names.get(builtin, f"BUILTIN_{builtin}")
            if name == "CUSTOM":
                name = "CUSTOM:" + (code.CustomCode() or b"?").decode("utf-8", "replace")
            ops[name] = max(ops.get(name, 0), int(code.Version()))
    except Exception as exc:  # a corrupt flatbuffer raises struct/index errors
        raise ConversionError(f"not a readable TFLite flatbuffer: {exc}") from exc
    return dict(sorted(ops.items()))


def _last_line(text: str) -> str:
    """The interpreter's reason: the "Didn't find op ..." line when there is one."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    telling = [line for line in lines if "find op" in line or "version" in line]
    return " ".join(dict.fromkeys([*telling[:2], *lines[-1:]]))[:400] if lines else ""
