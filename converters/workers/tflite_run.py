"""Run a TFLite model on a batch of float rows and save the (dequantized) output.

Usage: python tflite_run.py MODEL.tflite ROWS.npy OUT.npy [--interpreter tflite-runtime|ai-edge-litert]

Prints one JSON line: {"runtime": "name==version"}. Exit code 2 when the model cannot be loaded
or run (the reason on stderr). Standalone on purpose: it runs under the tflite-runtime
environment, where numpy < 2 and no Edgewise is installed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np


def interpreter_class(which: str) -> tuple[Any, str]:
    """(Interpreter class, "name==version") of the requested runtime."""
    from importlib.metadata import version

    if which == "tflite-runtime":
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, f"tflite-runtime=={version('tflite-runtime')}"
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter, f"ai-edge-litert=={version('ai-edge-litert')}"


def quantize(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float rows → the input tensor's dtype, with its scale and zero point when quantized."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return values.astype(dtype)
    scale, zero_point = detail["quantization"]
    if not scale:
        return values.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.issubdtype(values.dtype, np.floating) or not scale:
        return np.array(values, dtype=np.float32)
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


class BatchRunner:
    """One interpreter, resized to each batch; a single input and a single output."""

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        self.interpreter.allocate_tensors()
        inputs = interpreter.get_input_details()
        outputs = interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"the model has {len(inputs)} inputs and {len(outputs)} outputs; "
                             f"Edgewise serves models with one of each")
        self.input = inputs[0]
        self.output = outputs[0]
        self.rows = int(self.input["shape"][0])

    def run(self, rows: np.ndarray) -> np.ndarray:
        shape = [rows.shape[0], *(int(d) for d in self.input["shape"][1:])]
        if list(self.input["shape"]) != shape:
            self.interpreter.resize_tensor_input(self.input["index"], shape)
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]
        self.interpreter.set_tensor(self.input["index"],
                                    quantize(rows.reshape(shape), self.input))
        self.interpreter.invoke()
        return dequantize(self.interpreter.get_tensor(self.output["index"]), self.output)


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 5):
        print(__doc__, file=sys.stderr)
        return 64
    which = argv[4] if len(argv) == 5 else "tflite-runtime"
    try:
        cls, runtime = interpreter_class(which)
        runner = BatchRunner(cls(model_path=argv[0], num_threads=1))
        out = runner.run(np.load(argv[1]).astype(np.float32))
    except Exception as exc:  # report whatever the interpreter says, for the caller's error
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    np.save(argv[2], out)
    print(json.dumps({"runtime": runtime}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
