"""Small, checked edits of ONNX graphs: the flat ``input``, the label head, pruning outputs.

Network exporters (torch.onnx, tf2onnx, hummingbird) name tensors as they like and emit scores
only. The agent wants one float input named ``input`` taking flat rows, and for classifiers a
``label`` output beside the ``scores``; these helpers add exactly that and nothing else, so the
artifact's numbers stay the exporter's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from converters.deps import require
from converters.errors import ConversionError, UnsupportedModelError
from converters.source import SUPPORTED_NN

INPUT = "input"
LABEL = "label"
SCORES = "scores"
VALUE = "value"


def load_model(data: bytes) -> Any:
    onnx = require("onnx")
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ConversionError(f"not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    return model


def real_inputs(model: Any) -> list[Any]:
    """Graph inputs that are not initializers (old exporters list weights as inputs too)."""
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def row_shape_of(value: Any, description: str) -> tuple[int, ...]:
    """The fixed per-row shape of an input (all dims but the first), or refuse a free one."""
    dims = value.type.tensor_type.shape.dim
    shape = []
    for d in list(dims)[1:]:
        if not d.HasField("dim_value") or d.dim_value <= 0:
            raise UnsupportedModelError(description, f"input {value.name!r} has a free dimension "
                                        "besides the batch; export it with fixed feature sizes",
                                        supported=SUPPORTED_NN)
        shape.append(int(d.dim_value))
    if not shape:
        raise UnsupportedModelError(description, f"input {value.name!r} has no feature "
                                    "dimension", supported=SUPPORTED_NN)
    return tuple(shape)


def uses_ml_ops(model: Any) -> list[str]:
    """Op types from the ``ai.onnx.ml`` domain (TreeEnsemble, LinearClassifier, ZipMap...)."""
    return sorted({n.op_type for n in model.graph.node if n.domain == "ai.onnx.ml"})


def with_flat_input(model: Any, row_shape: Sequence[int]) -> Any:
    """Rename the single input to ``input`` taking ``[batch, prod(row_shape)]`` float rows,
    with a Reshape to the original row shape when it had more than one dimension."""
    onnx = require("onnx")
    helper = require("onnx.helper")
    inputs = real_inputs(model)
    if len(inputs) != 1:
        raise UnsupportedModelError(f"an ONNX graph with {len(inputs)} inputs",
                                    "Edgewise serves models with one input", supported=SUPPORTED_NN)
    original = inputs[0]
    if original.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise UnsupportedModelError("an ONNX graph with a non-float input",
                                    f"input {original.name!r} must be float32",
                                    supported=SUPPORTED_NN)
    width = math.prod(row_shape)
    model = _copy(model)
    graph = model.graph
    old_name = original.name
    new_input = helper.make_tensor_value_info(INPUT, onnx.TensorProto.FLOAT, ["batch", width])
    graph.input.remove(next(i for i in graph.input if i.name == old_name))
    graph.input.insert(0, new_input)
    if old_name == INPUT and len(row_shape) == 1:
        return model
    feed = INPUT if len(row_shape) == 1 else "edgewise_shaped_input"
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old_name:
                node.input[i] = feed
    if len(row_shape) > 1:
        shape_name = "edgewise_row_shape"
        graph.initializer.append(helper.make_tensor(
            shape_name, onnx.TensorProto.INT64, [len(row_shape) + 1], [-1, *row_shape]))
        graph.node.insert(0, helper.make_node("Reshape", [INPUT, shape_name], [feed],
                                              name="edgewise_reshape_input"))
    for output in graph.output:  # an input passed straight through
        if output.name == old_name:
            raise UnsupportedModelError("an ONNX graph whose output is its input", "",
                                        supported=SUPPORTED_NN)
    return model


def keep_outputs(model: Any, names: Sequence[str]) -> Any:
    """The sub-graph computing only ``names`` (drops a label branch before onnx2tf)."""
    utils = require("onnx.utils")
    present = [o.name for o in model.graph.output]
    missing = [n for n in names if n not in present]
    if missing:
        raise ConversionError(f"ONNX outputs {missing} not among {present}")
    extractor = utils.Extractor(model)
    sub = extractor.extract_model([i.name for i in real_inputs(model)], list(names))
    sub.ir_version = model.ir_version
    return sub


def rename_output(model: Any, old: str, new: str) -> Any:
    """Rename graph output ``old`` to ``new`` everywhere it is produced or consumed."""
    if old == new:
        return model
    model = _copy(model)
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
    for output in model.graph.output:
        if output.name == old:
            output.name = new
    return model


def with_label_head(model: Any, task: str, class_labels: Sequence[Any] | None) -> Any:
    """Name the single output ``scores`` (classifier) or ``value`` (regressor); classifiers get
    a ``label`` output too: the arg-max of the scores, looked up in ``class_labels``."""
    onnx = require("onnx")
    helper = require("onnx.helper")
    numpy_helper = require("onnx.numpy_helper")
    outputs = [o.name for o in model.graph.output]
    if len(outputs) != 1:
        raise UnsupportedModelError(f"an ONNX graph with {len(outputs)} outputs",
                                    "Edgewise serves network graphs with one output",
                                    supported=SUPPORTED_NN)
    model = rename_output(model, outputs[0], SCORES if task == "classification" else VALUE)
    if task != "classification":
        return model
    assert class_labels is not None
    values = np.asarray(list(class_labels))
    if values.dtype.kind in "iub":
        values = values.astype(np.int64)
        elem = onnx.TensorProto.INT64
    elif values.dtype.kind == "f":
        values = values.astype(np.float32)
        elem = onnx.TensorProto.FLOAT
    else:
        values = values.astype(object)
        elem = onnx.TensorProto.STRING
    graph = model.graph
    graph.initializer.append(numpy_helper.from_array(values, "edgewise_class_labels"))
    graph.node.extend([
        helper.make_node("ArgMax", [SCORES], ["edgewise_class_index"], axis=1, keepdims=0,
                         name="edgewise_argmax"),
        helper.make_node("Gather", ["edgewise_class_labels", "edgewise_class_index"], [LABEL],
                         axis=0, name="edgewise_label"),
    ])
    graph.output.insert(0, helper.make_tensor_value_info(LABEL, elem, ["batch"]))
    return model


def with_flat_label(model: Any, name: str = "label") -> Any:
    """The graph with output ``name`` reshaped to one value per row, when the converter wrote it
    as a single row ``[1, N]`` (skl2onnx does so for QuadraticDiscriminantAnalysis); otherwise
    the graph unchanged."""
    output = next((o for o in model.graph.output if o.name == name), None)
    if output is None or not output.type.HasField("tensor_type"):
        return model
    dims = output.type.tensor_type.shape.dim
    if len(dims) != 2 or not (dims[0].HasField("dim_value") and dims[0].dim_value == 1):
        return model
    helper = require("onnx.helper")
    numpy_helper = require("onnx.numpy_helper")
    model = _copy(model)
    graph = model.graph
    raw = f"{name}_as_one_row"
    for node in graph.node:
        for i, out in enumerate(node.output):
            if out == name:
                node.output[i] = raw
    graph.initializer.append(numpy_helper.from_array(np.array([-1], dtype=np.int64),
                                                     "edgewise_flat_shape"))
    graph.node.append(helper.make_node("Reshape", [raw, "edgewise_flat_shape"], [name],
                                       name="edgewise_flat_label"))
    position = [o.name for o in graph.output].index(name)
    elem = output.type.tensor_type.elem_type
    graph.output.remove(output)
    graph.output.insert(position, helper.make_tensor_value_info(name, elem, ["N"]))
    return model


def without_zipmap(model: Any) -> Any:
    """The graph with its ZipMap node removed: the output it fed now carries ZipMap's input,
    the probability tensor (the agent reads tensors, not sequences of maps)."""
    helper = require("onnx.helper")
    onnx = require("onnx")
    model = _copy(model)
    graph = model.graph
    for node in [n for n in graph.node if n.op_type == "ZipMap"]:
        (source,), (target,) = node.input, node.output
        graph.node.remove(node)
        for i, output in enumerate(graph.output):
            if output.name == target:
                for other in graph.node:  # whoever wrote the tensor now writes the output
                    for j, name in enumerate(other.output):
                        if name == source:
                            other.output[j] = target
                graph.output.remove(output)
                graph.output.insert(i, helper.make_tensor_value_info(
                    target, onnx.TensorProto.FLOAT, ["N", None]))
                break
    return model


def float64_to_float32(model: Any) -> Any:
    """Run double-precision parts of a graph in float32 (DOUBLE initializers and Casts to
    DOUBLE), which onnx2tf cannot mix with float32 tensors. hummingbird emits them for
    scalers; the parity check measures what the change costs."""
    onnx = require("onnx")
    numpy_helper = require("onnx.numpy_helper")
    model = _copy(model)
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.data_type == onnx.TensorProto.DOUBLE:
            array = numpy_helper.to_array(tensor).astype(np.float32)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, tensor.name))
    for node in model.graph.node:
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to" and \
                    attribute.i == onnx.TensorProto.DOUBLE:
                attribute.i = onnx.TensorProto.FLOAT
            if attribute.name == "value" and attribute.t.data_type == onnx.TensorProto.DOUBLE:
                array = numpy_helper.to_array(attribute.t).astype(np.float32)
                attribute.t.CopyFrom(numpy_helper.from_array(array, attribute.t.name))
    for value in [*model.graph.value_info, *model.graph.output]:
        if value.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE:
            value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return model


def onnx_bytes(model: Any) -> bytes:
    onnx = require("onnx")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ConversionError(f"the ONNX graph does not pass onnx.checker: {exc}") from exc
    data: bytes = model.SerializeToString()
    return data


def _copy(model: Any) -> Any:
    onnx = require("onnx")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy
