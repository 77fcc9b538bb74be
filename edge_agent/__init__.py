"""Edgewise edge agent: runs on the device, follows its desired model, serves predictions.

This package must stay installable alone (``pip install edgewise[agent]``): it imports nothing
from ``controller``, ``converters`` or ``simulator``, and no FastAPI, scikit-learn or onnx.
"""

from edgewise_wire.version import edgewise_version

# what the agent reports as agent_version; the same figure as `edgewise-agent --version`
__version__ = edgewise_version()
