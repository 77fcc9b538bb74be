"""int8 quantization of ONNX artifacts with onnxruntime.quantization.

int8-dynamic: weights stored as int8, activations quantized on the fly per batch
(``quantize_dynamic``); no calibration data. int8-static: weights and activations int8 with
scales calibrated on the sample (``quantize_static``, QDQ format); the graph's input and output
stay float. Either way the result is verified like any other artifact, against the source model.
A graph with nothing quantizable (e.g. a tree ensemble, which is one ``ai.onnx.ml`` op) is
refused rather than shipped unchanged under an int8 label.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from converters.artifact import Candidate
from converters.deps import require
from converters.errors import ConversionError, UnsupportedModelError
from converters.onnx_graph import load_model, real_inputs

log = logging.getLogger("edgewise.converters")

CALIBRATION_ROWS = 200
QUANTIZABLE = {"MatMul", "Gemm", "Conv", "ConvTranspose", "LSTM", "GRU", "Attention"}
QUANTIZED_OPS = ("DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "QuantizeLinear",
                 "QLinearMatMul", "QLinearConv", "DynamicQuantizeMatMul", "QGemm")


def quantize_onnx(data: bytes, precision: str, sample: np.ndarray, *, description: str,
                  converter: dict[str, Any]) -> Candidate:
    """Quantize a float32 ONNX artifact to ``int8-dynamic`` or ``int8-static``."""
    quantization = require("onnxruntime.quantization")
    ort = require("onnxruntime")
    started = time.perf_counter()
    if precision not in ("int8-dynamic", "int8-static"):
        raise ValueError(f"ONNX quantization cannot produce precision {precision!r}")
    model = load_model(data)
    kinds = sorted({n.op_type for n in model.graph.node})
    if not {n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")} & QUANTIZABLE:
        raise UnsupportedModelError(
            description, f"{precision} quantization finds nothing to quantize in its ONNX graph "
            f"(ops: {', '.join(kinds)}); ship the float32 artifact",
            supported="graphs with MatMul/Gemm/Conv layers: linear layers, MLPs, CNNs")
    input_name = real_inputs(model)[0].name
    with tempfile.TemporaryDirectory(prefix="edgewise-quant-") as tmp, _quiet_root_logger():
        source, target = Path(tmp, "float.onnx"), Path(tmp, "int8.onnx")
        source.write_bytes(data)
        try:
            if precision == "int8-dynamic":
                # onnxruntime's CPU ConvInteger takes uint8 weights only (before 1.24, which
                # the agent's memory budget keeps us on): int8 weights would convert but
                # not load on the device
                has_conv = any(n.op_type in ("Conv", "ConvTranspose") for n in model.graph.node)
                weights = (quantization.QuantType.QUInt8 if has_conv
                           else quantization.QuantType.QInt8)
                # the layer that writes the outputs stays float: the answer is its output,
                # and an error there is not damped by any later layer (the Keras digits MLP
                # and CNN meet the int8 tolerance this way and miss it fully quantized)
                quantization.quantize_dynamic(str(source), str(target), weight_type=weights,
                                              nodes_to_exclude=output_layers(model))
            else:
                reader = _Calibration(quantization.CalibrationDataReader, input_name,
                                      sample[:CALIBRATION_ROWS])
                quantization.quantize_static(
                    str(source), str(target), reader, quant_format=quantization.QuantFormat.QDQ,
                    activation_type=quantization.QuantType.QInt8,
                    weight_type=quantization.QuantType.QInt8, per_channel=False)
        except Exception as exc:  # onnxruntime.quantization raises assorted errors
            raise ConversionError(f"onnxruntime quantization ({precision}) failed for "
                                  f"{description}: {type(exc).__name__}: {exc}") from exc
        quantized = target.read_bytes()
    ops = {n.op_type for n in load_model(quantized).graph.node}
    if not ops & set(QUANTIZED_OPS):
        raise UnsupportedModelError(
            description, f"{precision} quantization found nothing to quantize in its ONNX graph "
            f"(ops: {', '.join(kinds)}); ship the float32 artifact",
            supported="graphs with MatMul/Gemm/Conv layers: linear models, MLPs, CNNs")
    return Candidate("onnx", precision, quantized,
                     {**converter, "quantizer": "onnxruntime.quantization",
                      "quantizer_version": ort.__version__},
                     time.perf_counter() - started)


def output_layers(model: Any) -> list[str]:
    """The quantizable nodes nearest the graph's outputs (through softmax, adds, reshapes...),
    when the graph has other quantizable nodes to quantize; else none, so a one-layer model
    (a linear model) is still quantized whole."""
    producers = {out: node for node in model.graph.node for out in node.output}
    found: list[str] = []
    seen: set[int] = set()
    pending = [output.name for output in model.graph.output]
    while pending:
        node = producers.get(pending.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type in QUANTIZABLE:
            if not node.name:
                return []  # an unnamed node cannot be excluded by name
            found.append(node.name)
        else:
            pending.extend(node.input)
    quantizable = sum(1 for node in model.graph.node if node.op_type in QUANTIZABLE)
    return found if quantizable > len(found) else []


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization logs "consider pre-processing" on the root logger every call."""
    root = logging.getLogger()

    def drop(record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()

    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _Calibration(base: type, input_name: str, rows: np.ndarray) -> Any:  # noqa: N802
    """A CalibrationDataReader over the sample, one row per call as onnxruntime expects."""

    class Reader(base):
        def __init__(self) -> None:
            self._rows = iter(rows.astype(np.float32))

        def get_next(self) -> dict[str, np.ndarray] | None:
            row = next(self._rows, None)
            return None if row is None else {input_name: row.reshape(1, -1)}

    return Reader()
