"""The house rules of docs/architecture.md, checked against the code's import statements.

- the table of who imports whom in docs/architecture.md is exactly the import graph between
  packages, and the graph has no circle;
- the wire contract imports the standard library only, and PyNaCl in the one module that
  verifies signatures (no other module anywhere imports PyNaCl);
- the pure cores import no I/O library;
- what a device installs (the agent and the neutral packages) imports nothing of the operator's
  side, and importing all of it loads none of those libraries;
- every repository path docs/architecture.md names exists.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
TOP = ("controller", "edge_agent", "edgewise_wire", "edgewise_monitoring", "edgewise_mqtt",
       "converters", "simulator")
DEVICE = ("edge_agent", "edgewise_wire", "edgewise_monitoring", "edgewise_mqtt")
# what a device never imports: the operator's side and its heavy libraries
NOT_ON_DEVICE = {"controller", "converters", "simulator", "fastapi", "uvicorn", "sklearn", "onnx",
                 "skl2onnx", "sqlalchemy", "alembic", "click", "httpx", "scipy", "cryptography"}
# pure cores: no database, MQTT, HTTP or clock; they may import these (and each other)
PURE_MAY_IMPORT = {"numpy", "scipy", "edgewise_wire", "edgewise_monitoring", "controller.errors"}
PURE = ("controller/rollouts/spec.py", "controller/rollouts/spec_parse.py",
        "controller/rollouts/spec_checks.py", "controller/rollouts/wave_plan.py",
        "controller/rollouts/gates.py",
        "controller/rollouts/engine.py", "controller/rollouts/decisions.py",
        "controller/rollouts/conflicts.py", "controller/rollouts/device_classes.py",
        "controller/monitoring/rules.py",
        "controller/monitoring/hysteresis.py", "controller/monitoring/drift_series.py",
        "controller/monitoring/drift_markers.py", "controller/monitoring/drift_test.py",
        "controller/monitoring/watch.py", "controller/monitoring/segments.py",
        "controller/fleet/selectors.py", "controller/experiments/spec.py",
        "controller/experiments/results.py",
        "controller/fleet/versions.py", "controller/web/rollup.py", "controller/paging.py",
        "controller/timebuckets.py", "controller/device_health/rules.py",
        "controller/data/export_query.py", "controller/data/export_fields.py",
        "edge_agent/update/", "edge_agent/health/window.py", "edge_agent/health/readings.py", "edgewise_monitoring/", "edgewise_wire/")
CLOCK_AND_IO = {"time", "socket", "sqlite3", "asyncio", "threading", "subprocess", "os"}
# deliberate exceptions, each with its reason
PURE_EXCEPTIONS = {
    # a message the sender builds without a timestamp gets the wall clock's (the agent and the
    # controller pass their own clock's time where it matters)
    "edgewise_wire.message_base": {"time"},
    # Ed25519 verification is libsodium's (pure computation, no I/O)
    "edgewise_wire.public_keys": {"nacl.bindings", "nacl.exceptions", "nacl.signing"},
}
# the one module that imports PyNaCl: the device's Ed25519 verification
NACL_MODULE = "edgewise_wire.public_keys"


def _modules(top: str) -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / top).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _type_only(tree: ast.Module) -> set[int]:
    """Ids of the nodes under ``if TYPE_CHECKING:``: imports for annotations, never run."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            out.update(id(n) for child in node.body for n in ast.walk(child))
    return out


def _imports(path: Path) -> set[str]:
    """What a module imports when it runs (type-only imports are left out)."""
    names: set[str] = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _package(module: str) -> str:
    """``controller.fleet.store`` -> ``controller.fleet``; other top-level packages are one node."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "controller" and len(parts) > 1 else parts[0]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for top in TOP:
        for name, path in _modules(top).items():
            source = _package(name)
            if source == "controller":
                continue  # controller/__init__.py: the namespace of the features
            graph[source]
            for imported in _imports(path):
                if imported.split(".")[0] in TOP:
                    target = _package(imported)
                    if target != source:
                        graph[source].add(target)
    return graph


def _documented() -> dict[str, set[str]]:
    text = DOC.read_text()
    block = text.split("<!-- imports:begin -->", 1)[1].split("<!-- imports:end -->", 1)[0]
    table: dict[str, set[str]] = {}
    for line in block.splitlines():
        if "->" not in line:
            continue
        left, right = line.split("->", 1)
        table[left.strip()] = {t.strip() for t in right.split(",") if t.strip()}
    return table


def test_the_documented_import_table_is_the_import_graph() -> None:
    actual = {k: v for k, v in _graph().items()}
    documented = _documented()
    missing = {k: sorted(v - documented.get(k, set())) for k, v in actual.items()
               if v - documented.get(k, set())}
    stale = {k: sorted(v - actual.get(k, set())) for k, v in documented.items()
             if v - actual.get(k, set())}
    assert not missing, f"imports docs/architecture.md does not list: {missing}"
    assert not stale, f"imports docs/architecture.md lists that the code no longer has: {stale}"
    assert set(documented) == set(actual), (
        f"packages: documented only {sorted(set(documented) - set(actual))}, "
        f"in code only {sorted(set(actual) - set(documented))}")


def test_no_import_circle_between_packages() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(
                    stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_wire_contract_imports_the_standard_library_only() -> None:
    """...and PyNaCl in its one verification module."""
    allowed = set(sys.stdlib_module_names) | {"edgewise_wire", "__future__"}
    offenders = {name: sorted(i for i in _imports(path) if i.split(".")[0] not in
                              allowed | ({"nacl"} if name == NACL_MODULE else set()))
                 for name, path in _modules("edgewise_wire").items()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_the_verification_module_imports_nacl() -> None:
    importers = sorted(name for top in TOP for name, path in _modules(top).items()
                       if any(i.split(".")[0] == "nacl" for i in _imports(path)))
    assert importers == [NACL_MODULE]


def test_pure_cores_import_no_io() -> None:
    pure_modules = {name: path for top in TOP for name, path in _modules(top).items()
                    if any(str(path.relative_to(ROOT)).startswith(p) for p in PURE)}
    pure_names = set(pure_modules)
    stdlib = set(sys.stdlib_module_names) - CLOCK_AND_IO
    offenders = {}
    for name, path in pure_modules.items():
        bad = []
        for imported in _imports(path):
            root = imported.split(".")[0]
            if root in stdlib or root == "__future__" or imported in pure_names:
                continue
            if imported in PURE_EXCEPTIONS.get(name, set()):
                continue
            if any(imported == p or imported.startswith(p + ".") for p in PURE_MAY_IMPORT):
                continue
            bad.append(imported)
        if bad:
            offenders[name] = sorted(bad)
    assert offenders == {}


def test_device_packages_name_nothing_of_the_operators_side() -> None:
    offenders = {}
    for top in DEVICE:
        for name, path in _modules(top).items():
            bad = sorted({i.split(".")[0] for i in _imports(path)} & NOT_ON_DEVICE)
            if bad:
                offenders[name] = bad
    assert offenders == {}


def test_importing_everything_a_device_installs_loads_nothing_of_the_operators_side() -> None:
    modules = sorted(name for top in DEVICE for name in _modules(top)
                     if not name.endswith("__main__"))
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted({{n.split('.')[0] for n in sys.modules}} & set({sorted(NOT_ON_DEVICE)!r}))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_path_the_architecture_page_names_exists() -> None:
    named = set(re.findall(r"`((?:controller|edge_agent|edgewise_\w+|converters|simulator|tests|"
                           r"docs)/[\w/{},.]*)`", DOC.read_text()))
    missing = []
    for path in named:
        # `controller/rollouts/{spec,gates}.py` names several files
        match = re.search(r"\{([^}]*)\}", path)
        variants = ([path[:match.start()] + v + path[match.end():] for v in match.group(1).split(",")]
                    if match else [path])
        missing += [v for v in variants if not (ROOT / v.rstrip("/")).exists()]
    assert missing == [], missing
