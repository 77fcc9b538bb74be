"""Optional heavy dependencies, imported only when a conversion needs them.

``import converters`` must stay cheap (the CLI imports it to print help), and a missing
dependency should say how to install it rather than fail with a bare ImportError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from converters.errors import ConversionError

# The extra that brings each heavy framework (see [project.optional-dependencies]).
EXTRAS = {"keras": "keras", "tensorflow": "keras", "tf2onnx": "keras", "torch": "torch",
          "onnxscript": "torch", "ai_edge_litert": "tflite"}


def install_hint(extra: str = "controller") -> str:
    """How to add an extra: from the checkout or wheel, never by name from an index (Edgewise
    is not published there, and an unclaimed name could be anybody's package)."""
    return f"pip install '.[{extra}]' in your Edgewise checkout (not from a package index)"


def require(module: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise ConversionError naming the extra to install.

    ``extra`` defaults to the one that provides the module's top-level package (``keras``,
    ``torch``, ``tflite``), else ``controller``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = extra or EXTRAS.get(module.split(".")[0], "controller")
        raise ConversionError(
            f"{module} is needed for this conversion but is not installed ({exc}); "
            f"run: {install_hint(extra)}"
        ) from exc
