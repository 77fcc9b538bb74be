"""Turn a pickled scikit-learn model into standard-op ONNX with hummingbird-ml.

Usage: python hummingbird_export.py MODEL.pkl SAMPLE.npy OUT.onnx

Runs in the ``hummingbird`` side environment (torch 2.13, onnx <= 1.16.1, the controller's
scikit-learn version). Prints one JSON line {"hummingbird": version, "torch": version,
"outputs": [names]}; exit code 2 with the reason on stderr when hummingbird cannot convert it.
"""

from __future__ import annotations

import json
import pickle
import sys
import warnings
from typing import Any

import numpy as np


def _export_without_dynamo(torch: Any) -> None:
    """hummingbird 0.4.12 calls torch.onnx.export without ``dynamo``; torch 2.13 defaults it to
    True, which needs onnxscript and rejects hummingbird's graphs. Use the TorchScript exporter."""
    original = torch.onnx.export

    def export(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("dynamo", False)
        return original(*args, **kwargs)

    torch.onnx.export = export


def _final_step(model: Any) -> Any:
    while hasattr(model, "steps") and model.steps:
        model = model.steps[-1][1]
    return model


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 64
    warnings.filterwarnings("ignore")
    try:
        import torch

        _export_without_dynamo(torch)
        import hummingbird
        from hummingbird.ml import convert

        with open(argv[0], "rb") as f:
            model = pickle.load(f)  # written by the converter from the user's own model
        sample = np.load(argv[1]).astype(np.float32)
        extra = {}
        if "GradientBoosting" in type(_final_step(model)).__name__:
            extra["tree_implementation"] = "perf_tree_trav"
        container = convert(model, "onnx", sample[:5], extra_config=extra)
        onnx_model = container.model
        with open(argv[2], "wb") as f:
            f.write(onnx_model.SerializeToString())
    except Exception as exc:  # hummingbird raises MissingConverter, RuntimeError, ...
        print(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return 2
    print(json.dumps({"hummingbird": hummingbird.__version__, "torch": torch.__version__,
                      "outputs": [o.name for o in onnx_model.graph.output]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
