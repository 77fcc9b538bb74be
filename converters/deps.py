"""Optional heavy dependencies, imported only when a conversion needs them.

``import converters`` must stay cheap (the CLI imports it to print help), and a missing
dependency should say how to install it rather than fail with a bare ImportError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from converters.errors import ConversionError

INSTALL_HINT = "pip install 'edgewise[controller]'"


def require(module: str) -> ModuleType:
    """Import ``module`` or raise ConversionError telling the operator what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConversionError(
            f"{module} is needed to convert models but is not installed ({exc}); "
            f"run: {INSTALL_HINT}"
        ) from exc
