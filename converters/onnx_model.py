"""Reading an ONNX model the way the manifest describes it, and running it as a device would.

Framework-neutral: any converter that produces ONNX bytes (scikit-learn today, others later)
uses these to fill the manifest's tensor specs and opsets and to run parity and smoke tests in
the same runtime the agent uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from converters.deps import require
from converters.errors import ConversionError
from edgewise_wire.manifest import TensorSpec


def tensor_specs(values: Any) -> tuple[TensorSpec, ...]:
    """TensorSpecs for a graph's inputs or outputs (``ValueInfoProto`` list).

    dtypes are numpy names ("float32", "int64"); string tensors are "string"; dimensions without
    a fixed size (the batch) are None. Non-tensor values (ZipMap's sequence of maps) are refused:
    the agent only reads tensors.
    """
    helper = require("onnx.helper")
    onnx = require("onnx")
    specs = []
    for value in values:
        if not value.type.HasField("tensor_type"):
            raise ConversionError(
                f"ONNX value {value.name!r} is not a tensor (a ZipMap left in the graph?); "
                f"the agent only reads tensors")
        tensor = value.type.tensor_type
        if tensor.elem_type == onnx.TensorProto.STRING:
            dtype = "string"
        else:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                      for d in tensor.shape.dim)
        specs.append(TensorSpec(value.name, dtype, shape))
    return tuple(specs)


def opset_versions(model: Any) -> dict[str, int]:
    """Domain → opset version from ``opset_import``; the default domain "" is "ai.onnx".

    skl2onnx can list a domain twice; the highest version is what a runtime must support.
    """
    versions: dict[str, int] = {}
    for entry in model.opset_import:
        domain = entry.domain or "ai.onnx"
        versions[domain] = max(versions.get(domain, 0), int(entry.version))
    return versions


class OnnxRunner:
    """An onnxruntime CPU session over in-memory ONNX bytes, set up like the agent's.

    One thread, as on the device: onnxruntime's tree ensembles split work differently with more
    threads or larger batches, which changes the summation order and so the last float32 bit of
    the result. Single-threaded, a row's output does not depend on the batch it is in.
    """

    def __init__(self, artifact: bytes) -> None:
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(artifact, options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ConversionError(f"onnxruntime cannot load the converted model: {exc}") from exc
        self.input_name: str = self._session.get_inputs()[0].name

    def run(self, sample: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        """Run ``sample`` (cast to float32) and return the named outputs as numpy arrays."""
        feed = {self.input_name: np.ascontiguousarray(sample, dtype=np.float32)}
        try:
            results = self._session.run(outputs, feed)
        except Exception as exc:
            raise ConversionError(f"onnxruntime failed to run the converted model: {exc}") from exc
        return [np.asarray(r) for r in results]
