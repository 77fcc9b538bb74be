"""PyTorch → ONNX (torch.onnx.export), and on to TFLite through onnx2tf.

Inputs: an ``nn.Module`` object (with an example input, or the sample's row shape), a
TorchScript file (``torch.jit.save``, ``.pt``/``.pth``/``.torchscript``) or a ``torch.export``
program (``.pt2``). The module is wrapped so that the artifact takes flat float rows and
reshapes them to the module's input shape (a Reshape node in the ONNX graph), exported with the TorchScript-based exporter
(``dynamo=False``: fast, no onnxscript needed) with a free batch dimension.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from converters.artifact import Candidate
from converters.deps import require
from converters.errors import (
    ConversionError,
    ModelFileError,
    SampleDataError,
    UnsupportedModelError,
)
from converters.onnx_graph import INPUT, load_model, with_flat_input
from converters.source import (
    SUPPORTED_NN,
    Source,
    default_class_labels,
    infer_task,
    outputs_to_predictions,
)

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".torchscript")
EXPORTED_SUFFIXES = (".pt2",)
ONNX_OPSET = 17


def is_torch_module(obj: Any) -> bool:
    return any(c.__module__.startswith("torch.") and c.__name__ == "Module"
               for c in type(obj).__mro__)


def load_torch_file(path: Path) -> Any:
    """A module from a TorchScript file or a torch.export program (``.pt2``)."""
    torch = require("torch", "torch")
    try:
        if path.suffix.lower() in EXPORTED_SUFFIXES:
            program = torch.export.load(str(path))
            module = program.module()
            module._edgewise_exported_program = program  # to_core_onnx exports the program
            return module
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ModelFileError(
            path, f"not a loadable {'torch.export' if path.suffix == '.pt2' else 'TorchScript'} "
                  f"file ({type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}); "
                  f"plain state_dict checkpoints cannot be converted: load them into your "
                  f"module and pass the module") from exc


def torch_source(module: Any, sample: np.ndarray, row_shape: Sequence[int], *,
                 task: str | None, labels: np.ndarray | None,
                 class_labels: Sequence[Any] | None, description: str = "") -> Source:
    """A Source running ``module`` (in eval mode, no grad) on flat rows reshaped to row_shape."""
    torch = require("torch", "torch")
    with contextlib.suppress(NotImplementedError):  # torch.export modules refuse eval()
        module.eval()
    wrapper = _flat_module(torch, module, tuple(int(d) for d in row_shape))
    try:
        with torch.no_grad():
            probe = wrapper(torch.from_numpy(sample[:2].astype(np.float32)))
    except Exception as exc:  # shape mismatches surface as RuntimeError from inside the module
        shape_text = "x".join(map(str, row_shape))
        raise SampleDataError(
            f"{description or type(module).__name__} cannot run on sample rows of shape "
            f"{shape_text}: {str(exc).strip().splitlines()[0][:200]} (give rows shaped like "
            f"the module's input, or example_input / --input-shape)") from exc
    if not isinstance(probe, torch.Tensor):
        raise UnsupportedModelError(description or type(module).__name__,
                                    f"its forward returns {type(probe).__name__}, not one tensor",
                                    supported=SUPPORTED_NN)
    n_out = int(probe.reshape(probe.shape[0], -1).shape[1])
    resolved = infer_task(n_out, task)
    classes = default_class_labels(n_out, labels, class_labels) \
        if resolved == "classification" else None

    def predict(rows: np.ndarray) -> Any:
        with torch.no_grad():
            out = wrapper(torch.from_numpy(rows.astype(np.float32))).numpy()
        return outputs_to_predictions(out.reshape(out.shape[0], -1), resolved, classes)

    return Source(kind="torch", framework="torch", framework_version=torch.__version__,
                  description=description or f"torch {type(module).__name__}", task=resolved,
                  row_shape=tuple(int(d) for d in row_shape), class_labels=classes,
                  predict=predict, model=wrapper)


def to_core_onnx(source: Source, sample: np.ndarray) -> tuple[Any, Candidate]:
    """(the exported graph with one ``input`` and one output, its converter record)."""
    torch = require("torch", "torch")
    started = time.perf_counter()
    buffer = io.BytesIO()
    # The module itself, on its own input shape (a wrapper would break TorchScript modules);
    # the flat input is added to the ONNX graph afterwards.
    module = source.model.inner
    example = torch.from_numpy(sample[:2].astype(np.float32).reshape(-1, *source.row_shape))
    program = getattr(module, "_edgewise_exported_program", None)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # the legacy-exporter notice, tracer warnings
            if program is not None:  # torch.export programs need the dynamo exporter
                require("onnxscript", "torch")
                exported = torch.onnx.export(program, dynamo=True, verbose=False)
                buffer.write(exported.model_proto.SerializeToString())
            else:
                torch.onnx.export(module, (example,), buffer, input_names=[INPUT],
                                  output_names=["output"], opset_version=ONNX_OPSET,
                                  dynamic_axes={INPUT: {0: "batch"}, "output": {0: "batch"}},
                                  dynamo=False)
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"torch.onnx.export failed for {source.description}: "
                              f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:400]}"
                              ) from exc
    model = with_flat_input(load_model(buffer.getvalue()), source.row_shape)
    return model, Candidate("onnx", "float32", b"",
                            {"converter": "torch.onnx.export", "converter_version":
                             torch.__version__, "opset": ONNX_OPSET},
                            time.perf_counter() - started)


def _flat_module(torch: Any, module: Any, row_shape: tuple[int, ...]) -> Any:
    class FlatInput(torch.nn.Module):
        """Takes [batch, prod(row_shape)] and feeds the module [batch, *row_shape]."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, x: Any) -> Any:
            if len(row_shape) > 1:
                x = x.reshape(-1, *row_shape)
            return self.inner(x)

    wrapper = FlatInput()
    wrapper.training = False  # not .eval(): it recurses into modules that refuse it
    return wrapper


def example_row_shape(example_input: Any, sample: Any) -> tuple[int, ...]:
    """The per-row input shape from an example input (tensor or array), else from the sample."""
    if example_input is not None:
        shape = tuple(np.asarray(example_input.detach().cpu() if hasattr(example_input, "detach")
                                 else example_input).shape)
    else:
        shape = tuple(np.asarray(sample).shape)
    if len(shape) < 2:
        raise ConversionError(f"an example input of shape {shape} has no batch dimension; pass "
                              f"a batch such as torch.zeros(1, n_features)")
    return tuple(int(d) for d in shape[1:])
