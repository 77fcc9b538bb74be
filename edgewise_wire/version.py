"""Which Edgewise this is: one source for `edgewise --version`, `edgewise-agent --version` and
the ``agent_version`` every device reports in its presence and state messages.

The installed distribution's metadata says it (``importlib.metadata``, what pip recorded from
pyproject.toml); a source checkout that was never installed reads pyproject.toml itself. Its
parsers cost the agent about 0.8 MiB of resident memory once the agent's other libraries are
loaded: the price of one source instead of a version string kept by hand beside pyproject.toml.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "edgewise"
# the checkout's pyproject.toml, beside the package directories
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
UNKNOWN = "unknown"


@cache
def edgewise_version(distribution: str = DISTRIBUTION, pyproject: Path = PYPROJECT) -> str:
    """The installed ``distribution``'s version, else the one ``pyproject`` declares for it,
    else ``"unknown"``."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        pass
    try:
        project = tomllib.loads(pyproject.read_text())["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return UNKNOWN
    if project.get("name") != distribution or not isinstance(project.get("version"), str):
        return UNKNOWN
    return str(project["version"])
