"""Side environments for converter tools that cannot share the controller's Python environment.

Five environments pin versions that conflict with the controller's (numpy 2, onnx 1.2x, TensorFlow
2.21), so each gets a virtual environment of its own and is run as a subprocess:

``onnx2tf``
    ONNX → TFLite. Pins TensorFlow 2.19, onnx 1.19 and numpy 1.26, and rewrites its input file.
``hummingbird``
    scikit-learn trees and linear models → standard-op ONNX (via PyTorch). Pins onnx ≤ 1.16.1.
    Gets the controller's own scikit-learn version, so the pickled model loads unchanged there.
``skl2onnx``
    skl2onnx with protobuf < 5 (and onnx 1.19): protobuf 7 refuses the booleans skl2onnx 1.20
    writes into tree-ensemble attributes, so HistGradientBoosting* fails in the controller's
    environment and converts here. Gets the controller's scikit-learn and numpy versions.
``compat-oldest``
    The oldest scikit-learn, skl2onnx, onnx, onnxruntime, xgboost and lightgbm Edgewise supports
    (docs/converters.md, "Compatibility"): workers/compat_smoke.py converts one model per
    estimator family there, as the tests do with the newest versions in the controller's
    environment.
``tflite-runtime``
    The frozen ``tflite-runtime`` 2.14 interpreter (needs numpy < 2), to verify that an artifact
    runs on devices that still use it.

Where an environment is found, in order:

1. ``EDGEWISE_<NAME>_PYTHON`` (e.g. ``EDGEWISE_ONNX2TF_PYTHON``): the Python of an environment
   you installed yourself;
2. the managed cache, ``$EDGEWISE_CACHE_DIR/venvs/<name>-<hash>`` (default cache directory
   ``~/.cache/edgewise``), where ``<hash>`` covers the pinned requirements and the Python version,
   so a change of pins builds a new environment and never reuses a stale one.

``python -m converters.envs setup [NAME ...]`` builds missing managed environments (under a
lock, so two builds never race) and removes superseded ones; ``python -m converters.envs status``
lists them.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters.errors import ConversionError

SETUP_HINT = "python -m converters.envs setup"


@dataclass(frozen=True)
class ToolEnv:
    """A side environment: its name, pinned requirements and what it is for."""

    name: str
    requirements: tuple[str, ...]
    purpose: str
    probe: str  # a module whose import proves the environment works

    @property
    def variable(self) -> str:
        return "EDGEWISE_" + self.name.upper().replace("-", "_") + "_PYTHON"

    def pinned(self) -> tuple[str, ...]:
        """Requirements with this process's scikit-learn version added where the env unpickles."""
        if self.name not in UNPICKLING:
            return self.requirements
        added = []
        for package in UNPICKLING[self.name]:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                added.append(f"{package}=={importlib.metadata.version(package)}")
        return (*self.requirements, *added)

    def key(self) -> str:
        text = "\n".join((platform.python_version(), platform.machine(), *self.pinned()))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# Environments that unpickle the user's model get these packages at the controller's versions.
UNPICKLING = {"hummingbird": ("scikit-learn",), "skl2onnx": ("scikit-learn", "numpy")}

ENVS: dict[str, ToolEnv] = {env.name: env for env in (
    ToolEnv("onnx2tf", (
        "onnx2tf==1.29.24", "tensorflow==2.19.0", "tf-keras==2.19.0", "onnx==1.19.1",
        "onnxruntime==1.23.0", "onnxsim==0.4.36", "onnx-graphsurgeon==0.5.8",
        "sng4onnx==2.0.1", "numpy==1.26.4", "protobuf==4.25.5", "psutil==5.9.5",
    ), "ONNX → TFLite (onnx2tf)", "onnx2tf"),
    ToolEnv("hummingbird", (
        "hummingbird-ml==0.4.12", "torch==2.13.0", "onnx==1.16.1", "onnxconverter-common==1.16.0",
        "onnxruntime==1.23.0",
        "protobuf==4.25.5", "numpy==1.26.4",
    ), "scikit-learn trees/linear models → standard-op ONNX (hummingbird-ml)", "hummingbird.ml"),
    ToolEnv("skl2onnx", (
        "skl2onnx==1.20.0", "onnx==1.19.1", "protobuf==4.25.5",
    ), "scikit-learn → ONNX with protobuf < 5 (the HistGradientBoosting fallback)", "skl2onnx"),
    ToolEnv("compat-oldest", (
        "scikit-learn==1.3.2", "skl2onnx==1.16.0", "onnx==1.15.0", "onnxruntime==1.20.1",
        "xgboost-cpu==2.1.1", "lightgbm==4.0.0", "onnxmltools==1.12.0", "numpy==1.26.4",
        "scipy==1.11.4", "protobuf==3.20.3",
    ), "the oldest supported converter libraries, for the compatibility smoke test",
        "skl2onnx"),
    ToolEnv("tflite-runtime", (
        "tflite-runtime==2.14.0", "numpy==1.26.4",
    ), "verify TFLite artifacts under tflite-runtime 2.14", "tflite_runtime.interpreter"),
)}


def cache_dir() -> Path:
    """``$EDGEWISE_CACHE_DIR`` or ``~/.cache/edgewise``."""
    configured = os.environ.get("EDGEWISE_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "edgewise"


def managed_dir(env: ToolEnv) -> Path:
    return cache_dir() / "venvs" / f"{env.name}-{env.key()}"


def _get(name: str) -> ToolEnv:
    if name not in ENVS:
        raise ValueError(f"unknown tool environment {name!r}; known: {sorted(ENVS)}")
    return ENVS[name]


def find_python(name: str) -> Path | None:
    """The Python executable of environment ``name``, or None when it is not installed."""
    env = _get(name)
    configured = os.environ.get(env.variable)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise ConversionError(f"{env.variable}={configured} is not a file; point it at the "
                                  f"python of an environment with: {' '.join(env.requirements)}")
        return path
    directory = managed_dir(env)
    python = directory / "bin" / "python"
    if (directory / ".complete").is_file() and python.is_file():
        return python
    return None


def require_python(name: str) -> Path:
    """Like find_python, but a missing environment raises ConversionError saying how to get it."""
    python = find_python(name)
    if python is None:
        env = _get(name)
        raise ConversionError(
            f"the {name} environment ({env.purpose}) is not installed; run: {SETUP_HINT} {name} "
            f"(builds it under {cache_dir() / 'venvs'}), or set {env.variable} to the python of "
            f"an environment with: {' '.join(env.pinned())}")
    return python


def setup(name: str, *, log: object = print) -> Path:
    """Build environment ``name`` in the managed cache unless it is there; return its python."""
    env = _get(name)
    directory = managed_dir(env)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f"{env.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (directory / ".complete").is_file():
            _say(log, f"{name}: cached at {directory}")
        else:
            if directory.exists():  # a build that died half-way
                shutil.rmtree(directory)
            started = time.monotonic()
            _say(log, f"{name}: building {directory} ({env.purpose}) ...")
            base = getattr(sys, "_base_executable", sys.executable)
            _run([base, "-m", "venv", str(directory)])
            pip = [str(directory / "bin" / "python"), "-m", "pip", "--disable-pip-version-check",
                   "--quiet"]
            _run([*pip, "install", "--upgrade", "pip"])
            _run([*pip, "install", *env.pinned()])
            _run([str(directory / "bin" / "python"), "-c", f"import {env.probe}"])
            (directory / ".complete").write_text("\n".join(env.pinned()) + "\n")
            _say(log, f"{name}: built in {time.monotonic() - started:.0f}s")
        for old in directory.parent.glob(f"{env.name}-*"):  # superseded pins
            if old.is_dir() and old != directory and len(old.name) == len(directory.name):
                shutil.rmtree(old, ignore_errors=True)
                _say(log, f"{name}: removed superseded {old}")
    return directory / "bin" / "python"


def run_in_env(name: str, args: Sequence[str], *, timeout: float,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run environment ``name``'s Python with ``args``, its output captured as text. A missing
    environment, or a run past ``timeout`` seconds, raises ConversionError; a failed run is the
    caller's to explain (:func:`stderr_reason`)."""
    python = require_python(name)
    try:
        return subprocess.run([str(python), *args], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"{name} did not finish within {timeout:.0f}s") from exc


def worker_report(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON line a worker prints last: the versions that made its result, and more."""
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def stderr_reason(done: subprocess.CompletedProcess[str]) -> str:
    """Why a worker failed: the last line it wrote on stderr (workers print the reason last)."""
    lines = [x for x in done.stderr.strip().splitlines() if x.strip()]
    return lines[-1][:300] if lines else "exit " + str(done.returncode)


def _say(log: object, message: str) -> None:
    if callable(log):
        log(message)


def _run(command: Sequence[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-15:]
        raise ConversionError(f"{' '.join(command[:4])} ... failed (exit {result.returncode}):\n"
                              + "\n".join(tail))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m converters.envs",
        description="Build or list the side environments of the converters (onnx2tf, "
                    "hummingbird, skl2onnx, tflite-runtime).",
        epilog="Example: python -m converters.envs setup onnx2tf tflite-runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("setup", help="build missing environments (all when none named)")
    build.add_argument("names", nargs="*", metavar="NAME", help=f"one of {', '.join(ENVS)}")
    sub.add_parser("status", help="where each environment is, or that it is missing")
    args = parser.parse_args(argv)
    if args.command == "setup":
        try:
            for name in args.names or list(ENVS):
                setup(name)
        except (ConversionError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    for name in ENVS:
        try:
            python = find_python(name)
        except ConversionError as exc:
            print(f"{name:15} error: {exc}")
            continue
        where = f"{python}" if python else f"missing (run: {SETUP_HINT} {name})"
        print(f"{name:15} {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
