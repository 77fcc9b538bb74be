"""Edgewise edge agent: runs on the device, follows its desired model, serves predictions.

This package must stay installable alone (``pip install edgewise[agent]``): it imports nothing
from ``controller``, ``converters`` or ``simulator``, and no FastAPI, scikit-learn or onnx.
"""

__version__ = "0.1.0"
