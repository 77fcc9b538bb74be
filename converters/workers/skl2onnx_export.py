"""Convert a pickled scikit-learn model with skl2onnx, in the ``skl2onnx`` side environment.

Usage: python skl2onnx_export.py MODEL.pkl N_FEATURES OUT.onnx

The environment pins protobuf < 5: protobuf 7 refuses the Python booleans that skl2onnx writes
into integer attributes of tree ensembles (HistGradientBoosting*), which older protobuf stores
as 0/1. Prints one JSON line {"skl2onnx": version, "onnx": version, "protobuf": version}; exit
code 2 with the reason on stderr when skl2onnx cannot convert it.
"""

from __future__ import annotations

import json
import pickle
import sys
import warnings
from typing import Any


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
        import google.protobuf
        import onnx
        import skl2onnx
        from skl2onnx.common.data_types import FloatTensorType
        from sklearn.base import is_classifier

        with open(argv[0], "rb") as f:
            model = pickle.load(f)  # written by the converter from the user's own model
        final = _final_step(model)
        options = {id(final): {"zipmap": False}} if is_classifier(final) else None
        onx = skl2onnx.convert_sklearn(
            model, initial_types=[("input", FloatTensorType([None, int(argv[1])]))],
            options=options)
        with open(argv[2], "wb") as f:
            f.write(onx.SerializeToString())
    except Exception as exc:  # skl2onnx raises RuntimeError, ValueError, NotImplementedError...
        print(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"[:400],
              file=sys.stderr)
        return 2
    print(json.dumps({"skl2onnx": skl2onnx.__version__, "onnx": onnx.__version__,
                      "protobuf": google.protobuf.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
