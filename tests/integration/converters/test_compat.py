"""The compatibility matrix of docs/converters.md: one smoke conversion per estimator family at
the newest supported versions (the controller's environment) and the oldest (the
``compat-oldest`` side environment, built by ``python -m converters.envs setup``)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from converters import envs

WORKER = Path(envs.__file__).resolve().parent / "workers" / "compat_smoke.py"
DOC = Path(__file__).resolve().parents[3] / "docs" / "converters.md"
FAMILIES = {"linear classifier", "linear regressor", "tree ensemble classifier",
            "tree ensemble regressor", "pipeline with MLP", "xgboost classifier",
            "xgboost regressor", "lightgbm classifier", "lightgbm regressor"}
# the boosting families of the controller's environment need the `boosting` extra
INSTALLED = {f for f in FAMILIES if f.split()[0] not in ("xgboost", "lightgbm")
             or importlib.util.find_spec(f.split()[0]) is not None}


def _run(python: Path | str) -> dict:  # type: ignore[type-arg]
    done = subprocess.run([str(python), str(WORKER)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _documented(end: str) -> dict[str, str]:
    """package → version in the matrix's row for ``end`` ("oldest" or "newest")."""
    text = DOC.read_text()
    header = re.search(r"^\| end \|(.+)\|$", text, flags=re.M)
    row = re.search(rf"^\| {end} \|(.+)\|$", text, flags=re.M)
    assert header and row, "docs/converters.md lost its compatibility matrix"
    names = [c.strip() for c in header.group(1).split("|")]
    values = [c.strip() for c in row.group(1).split("|")]
    return dict(zip(names, values, strict=True))


def test_every_family_converts_at_the_newest_versions_and_the_doc_says_which() -> None:
    result = _run(sys.executable)
    failed = {k: v for k, v in result["families"].items() if not v["ok"]}
    assert set(result["families"]) == INSTALLED and not failed, failed
    documented = _documented("newest")
    for package, installed in result["versions"].items():
        if package in documented:
            assert documented[package] == installed, (
                f"docs/converters.md lists {package} {documented[package]} as the newest "
                f"tested, {installed} is installed: update the matrix")


def test_every_family_converts_at_the_oldest_versions() -> None:
    python = envs.find_python("compat-oldest")
    if python is None:
        pytest.skip("the compat-oldest environment is not built "
                    "(python -m converters.envs setup compat-oldest)")
    result = _run(python)
    failed = {k: v for k, v in result["families"].items() if not v["ok"]}
    assert set(result["families"]) == FAMILIES and not failed, failed
    documented = _documented("oldest")
    for package, installed in result["versions"].items():
        if package in documented:
            assert documented[package] == installed
