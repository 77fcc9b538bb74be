"""The agent installs alone (`pip install edgewise[agent]`): it must not import the controller,
the converters, the simulator, nor their heavy dependencies."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import edge_agent

FORBIDDEN = {"controller", "converters", "simulator", "fastapi", "uvicorn", "sklearn", "onnx",
             "skl2onnx", "sqlalchemy", "click", "httpx"}
# Named in edgewise_wire/envelope.py, but only inside the signing functions (controller and tests):
# importing any agent module must not load it (~8.5 MiB of RSS on the device).
NOT_LOADED = FORBIDDEN | {"cryptography"}
AGENT_DIR = Path(edge_agent.__file__).parent


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_agent_module_names_a_forbidden_import() -> None:
    offenders = {
        str(path.relative_to(AGENT_DIR)): sorted(_imported_roots(path) & FORBIDDEN)
        for path in AGENT_DIR.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_every_agent_module_loads_nothing_forbidden() -> None:
    modules = sorted(
        "edge_agent." + ".".join(p.relative_to(AGENT_DIR).with_suffix("").parts)
        for p in AGENT_DIR.rglob("*.py") if p.name != "__init__.py" and p.name != "__main__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted({{n.split('.')[0] for n in sys.modules}} & set({sorted(NOT_LOADED)!r}))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_shipped_example_config_loads() -> None:
    from edge_agent.config import load_config

    example = Path(__file__).parents[1] / "deploy" / "agent.toml.example"
    config = load_config(example)
    assert config.device_id == "pi-berlin-01"
    assert config.labels == {"site": "berlin", "hw": "pi4"}
    assert config.broker.host == "mqtt.example.net"
