"""Shared pieces of the benchmarks: the machine, the broker and controller, sized models,
results files and the sections of docs/benchmarks.md.

Every benchmark measures its own baseline in the same run, on the same machine, and reports the
ratio; figures from a shared two-core machine are noisy, so each result records the load average
before and after it ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

RESULTS_DIR = REPO_ROOT / "bench" / "results"
CACHE_DIR = REPO_ROOT / "bench" / ".cache"
DOC = REPO_ROOT / "docs" / "benchmarks.md"

from edgewise_wire import Manifest  # noqa: E402
from simulator.broker import BrokerProcess, find_mosquitto, mosquitto_broker  # noqa: E402
from simulator.fleet import ProcessSample, sample_process  # noqa: E402

MIB = 1024 * 1024


# -- the machine ---------------------------------------------------------------------------------

def _first(path: str, prefix: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    return "?"


def load_average() -> float:
    return os.getloadavg()[0]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import onnxruntime
    import paho.mqtt

    mosquitto = "?"
    binary = find_mosquitto()
    if binary:
        with contextlib.suppress(Exception):
            out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=5)
            mosquitto = (out.stdout or out.stderr).splitlines()[0].split("version")[-1].strip()
    mem_kib = _first("/proc/meminfo", "MemTotal").split()[0]
    return {
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem_kib) / 1024 / 1024, 1) if mem_kib.isdigit() else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "paho_mqtt": paho.mqtt.__version__,
        "mosquitto": mosquitto,
        "load_average_1m_at_start": round(load_average(), 2),
    }


def machine_line(info: dict[str, Any]) -> str:
    return (f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, {info['os']}, "
            f"Python {info['python']}, {cited('onnxruntime', info['onnxruntime'])}, "
            f"{cited('paho-mqtt', info['paho_mqtt'])}, Mosquitto {info['mosquitto']}")


def agent_pin(package: str) -> str | None:
    """The version range pyproject.toml's ``agent`` extra allows for ``package``, if it names it."""
    import tomllib

    from packaging.requirements import Requirement

    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for line in extras["agent"]:
        requirement = Requirement(line)
        if requirement.name == package:
            return str(requirement.specifier)
    return None


def cited(package: str, version: str) -> str:
    """``package version`` for a doc, with ", outside today's pin SPEC" when the project's pins
    no longer admit that version: a figure measured with another release says so (and
    tests/unit/test_docs_figures.py refuses a citation outside the pins that does not)."""
    from packaging.specifiers import SpecifierSet

    pin = agent_pin(package)
    if pin is None or SpecifierSet(pin).contains(version, prereleases=True):
        return f"{package} {version}"
    return f"{package} {version}, outside today's pin {pin}"


def mem_available_mib() -> float:
    value = _first("/proc/meminfo", "MemAvailable").split()[0]
    return int(value) / 1024 if value.isdigit() else float("inf")


def say(text: str) -> None:
    """A progress line, shown at once even when the output goes to a pipe or a log."""
    print(text, flush=True)


# -- results -------------------------------------------------------------------------------------

def measurement(info: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A benchmark's result record: the machine, when, its own fields, the load after it."""
    return {"machine": info, "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            **fields, "load_average_after": round(load_average(), 2)}


def publish(name: str, data: dict[str, Any], markdown: Callable[[dict[str, Any]], str], *,
            doc: bool = True, say: Callable[[str], None] = print) -> Path:
    """Write ``bench/results/NAME.json`` and, unless ``doc`` is off, rewrite the benchmark's
    section of docs/benchmarks.md from ``markdown(data)``."""
    path = write_result(name, data)
    if doc:
        update_doc_section(name, markdown(data))
    say(f"results: {path}")
    return path


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


_DOC_HEADER = """# Benchmarks

Figures from `bench/run` (a quick version of every benchmark, under ten minutes) or the single
scripts in `bench/`. Each benchmark measures its baseline in the same run and prints the ratio;
JSON results are in `bench/results/`. Each section below is rewritten by the benchmark that owns
it; the machine and the load average (a shared machine is noisy) are given with each.
"""


def update_doc_section(name: str, markdown: str, doc: Path = DOC) -> None:
    """Replace the section between ``<!-- bench:NAME -->`` markers in docs/benchmarks.md (or
    append it); other sections are left as they are."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    text = doc.read_text() if doc.exists() else _DOC_HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{value:.{digits}f}"


# -- models of a chosen size -----------------------------------------------------------------------

@dataclass(frozen=True)
class SizedModel:
    manifest: Manifest
    artifact: bytes
    description: str

    @property
    def size(self) -> int:
        return len(self.artifact)


def _mlp_layers(target_bytes: int, n_features: int = 64, n_classes: int = 10) -> tuple[int, int]:
    """Two hidden layers whose float32 weights come to about ``target_bytes``."""
    params = target_bytes // 4
    first = 256 if params < 100_000 else 1024 if params < 1_000_000 else 2048
    second = max(8, (params - n_features * first - first - n_classes) // (first + 1 + n_classes))
    return first, second


def sized_model(target_mb: float, name: str | None = None) -> SizedModel:
    """A real model of about ``target_mb`` MB: a scikit-learn MLP (two hidden layers) trained
    briefly on the bundled 8x8 digits, converted by Edgewise's own converter (parity checked,
    smoke tests and reference profile in the manifest). Cached in bench/.cache."""
    target = int(target_mb * MIB)
    first, second = _mlp_layers(target)
    name = name or f"digits-mlp-{target_mb:g}mb"
    stem = CACHE_DIR / f"{name}-{first}x{second}"
    description = (f"scikit-learn MLPClassifier({first}, {second}) on 8x8 digits, converted "
                   f"with skl2onnx by converters.convert_sklearn")
    if stem.with_suffix(".onnx").exists() and stem.with_suffix(".json").exists():
        with contextlib.suppress(Exception):
            manifest = Manifest.from_dict(json.loads(stem.with_suffix(".json").read_text()))
            artifact = stem.with_suffix(".onnx").read_bytes()
            if manifest.artifact.size == len(artifact):
                return SizedModel(manifest, artifact, description)
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from converters import convert_sklearn

    digits = load_digits()
    x, y = digits.data.astype("float32"), digits.target
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(first, second), max_iter=3,
                              random_state=0).fit(x, y)
    result = convert_sklearn(model, x[:300], name=name, labels=y[:300], tolerance=1e-3,
                             feature_names=[f"px{i}" for i in range(64)])
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".onnx").write_bytes(result.artifact)
    stem.with_suffix(".json").write_text(json.dumps(result.manifest.to_dict()))
    return SizedModel(result.manifest, result.artifact, description)


# -- broker and controller -------------------------------------------------------------------------

@dataclass
class Stack:
    broker: BrokerProcess
    controller: subprocess.Popen[bytes]
    url: str
    workdir: Path

    def samples(self) -> dict[str, ProcessSample]:
        out = {"controller": sample_process(self.controller.pid)}
        if self.broker.proc is not None:
            out["broker"] = sample_process(self.broker.proc.pid)
        return out


@contextlib.contextmanager
def stack(workdir: Path, controller_args: list[str] | None = None) -> Iterator[Stack]:
    """A Mosquitto on a free port and a controller process (SQLite) on a fresh directory."""
    from simulator.demo import start_controller, stop_process

    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    broker = mosquitto_broker(workdir / "broker")
    broker.start()
    try:
        proc, url = start_controller(workdir / "controller", broker, extra_args=controller_args)
        try:
            yield Stack(broker, proc, url, workdir)
        finally:
            stop_process(proc)
    finally:
        broker.stop()


def cpu_between(a: dict[str, ProcessSample], b: dict[str, ProcessSample], key: str) -> float:
    """CPU percent of one core used by ``key`` between two sample sets."""
    return b[key].cpu_percent_since(a[key]) if key in a and key in b else float("nan")


def now() -> float:
    return time.perf_counter()
