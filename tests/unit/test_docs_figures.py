"""Figures the docs cite, checked against where they come from, without re-running a benchmark.

- Edgewise's own version, where the docs show it (a wheel's name, an ``agent_version``), is
  pyproject.toml's.
- Every onnxruntime, numpy or paho-mqtt version cited in README.md, docs/*.md or a docstring lies
  within pyproject.toml's pins, or says at once that it does not: ``onnxruntime 1.32.0, outside
  today's pin <1.24,>=1.20`` (bench/common.py ``cited`` writes that for a benchmark run on another
  release), and the pin it names is today's.
- Every size in README.md, docs/*.md (but docs/benchmarks.md, the benchmarks' own output) or a
  docstring or comment of the project's packages (``0.4 MiB``, ``128 KiB``) is registered below
  with its source: measured here (an import's resident cost, in a fresh
  interpreter), a constant of the code, a figure of docs/benchmarks.md (the benchmarks' own
  output, committed), or a stated reason it is not a measurement. A new size fails until it is
  registered; a registered one that moved away from its source fails too.
- The README's screenshot (docs/dashboard.png) comes with the figures it shows
  (docs/dashboard.json, written by the browser test), and they agree with each other.
"""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import sys
import tokenize
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("controller", "edge_agent", "edgewise_wire", "edgewise_monitoring", "edgewise_mqtt",
            "converters", "simulator", "bench")
BENCHMARKS = ROOT / "docs" / "benchmarks.md"

# -- versions -------------------------------------------------------------------------------------

PINNED = ("onnxruntime", "numpy", "paho-mqtt")
CITATION = re.compile(r"\b(onnxruntime|numpy|paho-mqtt)(?:==|\s+)v?(\d+\.\d+(?:\.\d+)?)\b(?!\+)")
OUTSIDE = re.compile(r"^\s*[,(;]\s*outside today's pin ([<>=!~0-9.,]*[0-9])")


def _pins() -> dict[str, SpecifierSet]:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    pins = {}
    for line in extras["agent"]:
        requirement = Requirement(line)
        if requirement.name in PINNED:
            pins[requirement.name] = requirement.specifier
    return pins


def _docstrings(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield doc


def _python_files() -> list[Path]:
    return sorted(p for top in PACKAGES for p in (ROOT / top).rglob("*.py"))


def _texts() -> Iterator[tuple[str, str]]:
    """(where, text): the docs whole, and every docstring of the packages."""
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        yield str(path.relative_to(ROOT)), path.read_text()
    for path in _python_files():
        for doc in _docstrings(path):
            yield str(path.relative_to(ROOT)), doc


def version_problems(where: str, text: str, pins: dict[str, SpecifierSet]) -> list[str]:
    problems = []
    flat = " ".join(text.split())
    for match in CITATION.finditer(flat):
        package, version = match.groups()
        if pins[package].contains(version, prereleases=True):
            continue
        note = OUTSIDE.match(flat[match.end():])
        cited = f"{where}: {package} {version}"
        if note is None:
            problems.append(f"{cited} lies outside today's pin {pins[package]}: re-measure, or "
                            f"write '{package} {version}, outside today's pin {pins[package]}'")
        elif SpecifierSet(note.group(1)) != pins[package]:
            problems.append(f"{cited} names the pin {note.group(1)}, but today's is "
                            f"{pins[package]}")
    return problems


def test_pins_are_read() -> None:
    assert set(_pins()) == set(PINNED)


def test_cited_versions_lie_within_the_pins_or_say_they_do_not() -> None:
    pins = _pins()
    problems = [p for where, text in _texts() for p in version_problems(where, text, pins)]
    assert not problems, "\n".join(problems)


# Edgewise's own version where the docs show it: a wheel's file name, an agent_version example
OWN_VERSION = re.compile(r"edgewise-(\d+\.\d+\.\d+)-py3|\"agent_version\": \"(\d+\.\d+\.\d+)\"")


def test_edgewise_versions_cited_are_the_projects() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    sources = [*_texts(), *((str(p.relative_to(ROOT)), p.read_text())
                            for p in sorted((ROOT / "deploy").glob("*.sh")))]
    cited = {(where, m.group(1) or m.group(2)) for where, text in sources
             for m in OWN_VERSION.finditer(text)}
    assert cited, "the pattern finds nothing: it no longer checks anything"
    assert not {c for c in cited if c[1] != version}, f"pyproject.toml says {version}: {cited}"


def test_the_version_check_catches_what_it_should() -> None:
    pins = {"onnxruntime": SpecifierSet(">=1.20,<1.24"), "numpy": SpecifierSet(">=1.24"),
            "paho-mqtt": SpecifierSet(">=2.1,<3")}
    assert version_problems("x", "onnxruntime 1.23.2 and numpy 2.4.6", pins) == []
    assert version_problems("x", 'verified_runtimes: ["onnxruntime==1.20.1"]', pins) == []
    assert len(version_problems("x", "Python 3.11.7, onnxruntime 1.32.0, paho-mqtt", pins)) == 1
    assert len(version_problems("x", "paho-mqtt 1.6.1", pins)) == 1
    assert version_problems(
        "x", "onnxruntime 1.32.0, outside today's pin <1.24,>=1.20, paho-mqtt 2.2.0", pins) == []
    stale = version_problems("x", "onnxruntime 1.32.0, outside today's pin <1.25", pins)
    assert len(stale) == 1 and "today's is" in stale[0]
    # a line break inside a citation is still a citation
    assert len(version_problems("x", "with onnxruntime\n1.32.0 here", pins)) == 1


# -- sizes ----------------------------------------------------------------------------------------

SIZE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?) ?(KiB|MiB)\b")


@dataclass(frozen=True)
class ImportCost:
    """Measured: the resident memory importing ``modules`` adds after ``after``."""
    after: tuple[str, ...]
    modules: tuple[str, ...]


@dataclass(frozen=True)
class Constant:
    """The code's own value, in bytes."""
    value: Callable[[], int]


@dataclass(frozen=True)
class Benchmark:
    """A figure in docs/benchmarks.md, found by a pattern with one group, in ``unit``."""
    pattern: str
    unit: str = "MiB"


Source = ImportCost | Constant | Benchmark | str  # str: why it is not a measurement


def _malloc_threshold() -> int:
    from edge_agent.malloc_tuning import THRESHOLD_BYTES

    return THRESHOLD_BYTES


def _chunk_size() -> int:
    from edgewise_wire.manifest import DEFAULT_CHUNK_SIZE

    return DEFAULT_CHUNK_SIZE


def _max_artifact() -> int:
    from edgewise_wire.manifest import MAX_ARTIFACT_SIZE

    return MAX_ARTIFACT_SIZE


def _max_json_body() -> int:
    from controller.rest import MAX_JSON_BODY

    return MAX_JSON_BODY


def _form_overhead() -> int:
    from controller.rest import MAX_FORM_OVERHEAD

    return MAX_FORM_OVERHEAD


def _max_control() -> int:
    from edgewise_wire.message_base import MAX_CONTROL_BYTES

    return MAX_CONTROL_BYTES


def _max_telemetry() -> int:
    from edgewise_wire.message_base import MAX_TELEMETRY_BYTES

    return MAX_TELEMETRY_BYTES


def _local_api_body() -> int:
    from edge_agent.local_api import MAX_BODY

    return MAX_BODY


def _disk_free_alert() -> int:
    from controller.device_health.rules import HealthThresholds

    return int(HealthThresholds().disk_free_bytes)


def _leak_per_hour() -> int:
    from controller.device_health.rules import HealthThresholds

    return int(HealthThresholds().leak_bytes_per_hour)


# (file, figure as written) -> where it comes from
SIZES: dict[tuple[str, str], Source] = {
    # -- the docs
    ("docs/protocol.md", "1 MiB"): Constant(_max_control),
    ("docs/protocol.md", "4 MiB"): Constant(_max_telemetry),
    ("docs/protocol.md", "64 KiB"): Constant(_chunk_size),
    ("docs/cli.md", "64 KiB"): Constant(_chunk_size),
    ("docs/deploy.md", "64 KiB"): Constant(_chunk_size),
    ("docs/protocol.md", "512 MiB"): Constant(_max_artifact),
    ("docs/security.md", "1 MiB"): Constant(_max_control),  # also UPLOAD_BLOCK's size
    ("docs/security.md", "8 MiB"): Constant(_max_json_body),
    ("docs/security.md", "2 MiB"): Constant(_form_overhead),
    ("docs/security.md", "512 MiB"): Constant(_max_artifact),
    ("docs/security.md", "300 MiB"): "the artifact tests/e2e/bad_input/test_large_upload.py "
                                     "uploads",
    ("docs/security.md", "100 MiB"): "that test's bound on the controller's resident growth",
    ("docs/security.md", "4 MiB"): Constant(_max_telemetry),
    ("docs/agent.md", "4 MiB"): Constant(_local_api_body),
    ("docs/agent.md", "1 MiB"): "the read size of edge_agent/download.py and runtime.py "
                                "(1 << 20)",
    ("docs/agent.md", "128 KiB"): Constant(_malloc_threshold),
    ("docs/agent.md", "14 MiB"): ImportCost(("numpy",), ("onnxruntime",)),
    ("docs/agent.md", "20 MiB"): "onnxruntime 1.32's import, measured once in a side "
                                 "environment (outside the pin, so not measurable here)",
    ("docs/simulator.md", "190 KiB"): Benchmark(r"\| 1000 \| [\d.]+ \| (\d+) KiB \|", "KiB"),
    ("docs/simulator.md", "1.9 MiB"): Benchmark(r"\| 1MB \| 1000 \|(?: [^|]* \|){9} ([\d.]+) \|"),
    ("docs/simulator.md", "18 MiB"): Benchmark(r"held ~([\d.]+) MiB per device"),
    ("docs/simulator.md", "10.6 MiB"): "the onnxruntime sessions' share of it, measured with "
                                       "bench/bench_fleet.py in an earlier run",
    ("docs/monitoring.md", "200 MiB"): Constant(_disk_free_alert),
    ("docs/monitoring.md", "1 MiB"): Constant(_leak_per_hour),
    ("docs/scaling.md", "64 KiB"): Constant(_chunk_size),
    ("docs/scaling.md", "1 MiB"): Constant(_max_control),
    ("docs/scaling.md", "8 MiB"): "a payload tests/e2e/broker_cluster/test_nats_differences.py "
                                  "sends between NATS nodes",
    ("docs/scaling.md", "64 MiB"): "a payload a NATS 2.9 cluster did not deliver, tried once by "
                                   "hand (not a test: it takes the node's memory)",
    # -- the code's docstrings and comments
    ("bench/bench_health.py", "2 MiB"): "the health sampler's memory budget, a target",
    ("bench/bench_health.py", "80 MiB"): "the agent's memory target (README.md)",
    ("bench/bench_agent_memory.py", "80 MiB"): "the agent's memory target (README.md)",
    ("bench/bench_fleet.py", "64 KiB"): Constant(_chunk_size),
    ("bench/bench_predict.py", "10 MiB"): "the size of a model the benchmark builds",
    ("bench/bench_update.py", "50 MiB"): "the size of a model the benchmark builds",
    ("bench/onnx_mlp.py", "50 MiB"): "the size of a model the benchmark builds",
    ("bench/page_cache.py", "9 MiB"): "docs/benchmarks.md, agent memory: 34.5 against 25.2 MiB "
                                      "file-backed, before and after dropping the cache",
    ("controller/models/artifact_store.py", "500 MiB"): "an example of a large model",
    ("edge_agent/local_api.py", "25 MiB"): ImportCost(("asyncio", "json", "ssl"),
                                                     ("fastapi", "uvicorn")),
    ("edge_agent/malloc_tuning.py", "32 MiB"): "glibc's documented ceiling of its dynamic mmap "
                                               "threshold on 64-bit systems",
    ("edge_agent/malloc_tuning.py", "128 KiB"): Constant(_malloc_threshold),
    ("edge_agent/malloc_tuning.py", "1 MiB"): "the size of the benchmark's model",
    ("edge_agent/malloc_tuning.py", "12.5 MiB"): Benchmark(r"peaked ([\d.]+) MiB higher"),
    ("edgewise_wire/message_base.py", "100 KiB"): "an estimate: 500 records of about 200 "
                                                  "bytes (docs/benchmarks.md, telemetry)",
    ("edgewise_wire/public_keys.py", "8.5 MiB"): Benchmark(r"cryptography's import had added "
                                                           r"([\d.]+) MiB"),
    ("edgewise_monitoring/__init__.py", "0.0 MiB"): ImportCost(
        ("numpy", "edgewise_monitoring"), ("edgewise_monitoring.evidence",)),
    ("edgewise_wire/version.py", "0.8 MiB"): ImportCost(
        ("numpy", "onnxruntime", "paho.mqtt.client", "sqlite3", "ssl", "asyncio", "json"),
        ("importlib.metadata",)),
    ("edgewise_monitoring/sequential.py", "0.4 MiB"): ImportCost(
        ("numpy", "edgewise_monitoring.sequential"), ("statistics",)),
}

_MEASURE = """
import importlib, sys
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
for name in sys.argv[1].split(","):
    if name:
        importlib.import_module(name)
before = rss()
for name in sys.argv[2].split(","):
    importlib.import_module(name)
print((rss() - before) / 1024)
"""


def _comments(path: Path) -> Iterator[str]:
    with io.StringIO(path.read_text()) as source:
        for token in tokenize.generate_tokens(source.readline):
            if token.type == tokenize.COMMENT:
                yield token.string


def _cited_sizes() -> set[tuple[str, str]]:
    found = set()
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if path != BENCHMARKS:
            for match in SIZE.finditer(" ".join(path.read_text().split())):
                found.add((str(path.relative_to(ROOT)), f"{match.group(1)} {match.group(2)}"))
    for path in _python_files():
        where = str(path.relative_to(ROOT))
        for text in [*_docstrings(path), *_comments(path)]:
            for match in SIZE.finditer(" ".join(text.split())):
                found.add((where, f"{match.group(1)} {match.group(2)}"))
    return found


def _mib(figure: str) -> float:
    number, unit = figure.split()
    return float(number) / (1024 if unit == "KiB" else 1)


def _import_cost_mib(cost: ImportCost) -> float:
    out = subprocess.run([sys.executable, "-c", _MEASURE, ",".join(cost.after),
                          ",".join(cost.modules)], capture_output=True, text=True, timeout=120,
                         cwd=ROOT, check=True)
    return float(out.stdout)


def close_enough(claimed: float, measured: float) -> bool:
    """A rounded "about" figure: within a factor of two, or 0.3 MiB (page-sized noise)."""
    return abs(claimed - measured) <= 0.3 or (measured > 0 and 0.5 <= claimed / measured <= 2.0)


def test_every_size_in_the_code_is_registered_with_its_source() -> None:
    cited = _cited_sizes()
    unregistered = sorted(cited - set(SIZES))
    assert not unregistered, ("sizes cited in docstrings or comments without a source in "
                              f"SIZES: {unregistered}")
    gone = sorted(set(SIZES) - cited)
    assert not gone, f"registered sizes no longer cited (remove them from SIZES): {gone}"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("key", [k for k, v in SIZES.items() if isinstance(v, ImportCost)],
                         ids=lambda k: f"{k[0]}:{k[1]}")
def test_import_costs_are_what_the_docstrings_say(key: tuple[str, str]) -> None:
    cost = SIZES[key]
    assert isinstance(cost, ImportCost)
    measured = _import_cost_mib(cost)
    assert close_enough(_mib(key[1]), measured), (
        f"{key[0]} says {key[1]}; importing {', '.join(cost.modules)} costs {measured:.2f} MiB")


@pytest.mark.parametrize("key", [k for k, v in SIZES.items()
                                 if isinstance(v, (Constant, Benchmark))],
                         ids=lambda k: f"{k[0]}:{k[1]}")
def test_sizes_from_the_code_and_the_benchmarks_match(key: tuple[str, str]) -> None:
    source = SIZES[key]
    if isinstance(source, Constant):
        assert _mib(key[1]) * 1024 * 1024 == source.value(), key
        return
    assert isinstance(source, Benchmark)
    found = re.search(source.pattern, " ".join(BENCHMARKS.read_text().split()))
    assert found, f"docs/benchmarks.md no longer has {source.pattern!r} ({key})"
    measured = _mib(f"{found.group(1)} {source.unit}")
    assert abs(_mib(key[1]) - measured) <= 0.1 * measured + 0.05, (
        f"{key[0]} says {key[1]}, docs/benchmarks.md {found.group(1)} {source.unit}")


def test_the_size_check_catches_a_claim_far_from_its_measure() -> None:
    # the figure an earlier docstring gave for the hand-made Ed25519 module, against what its
    # import cost when it was measured
    assert not close_enough(_mib("50 KiB"), 0.58)
    assert close_enough(_mib("0.5 MiB"), 0.58) and close_enough(25, 23.6)


# -- the README's screenshot ----------------------------------------------------------------------

def test_the_screenshot_and_its_figures_belong_together() -> None:
    """docs/dashboard.json is what the browser test read off the page when it took
    docs/dashboard.png (EDGEWISE_UPDATE_DOCS=1): the same file, and figures that agree."""
    from tests.harness.dashboard_figures import SCREENSHOT, SIDECAR, problems, sha256

    shown = json.loads(SIDECAR.read_text())
    assert shown["screenshot"] == SCREENSHOT.name
    assert shown["sha256"] == sha256(SCREENSHOT), (
        "docs/dashboard.png changed without its figures: regenerate both with "
        "EDGEWISE_UPDATE_DOCS=1 pytest tests/e2e/web/test_dashboard_browser.py")
    assert not problems(shown), problems(shown)


def test_the_screenshot_rules_catch_a_psi_beside_no_alert_unexplained() -> None:
    from tests.harness.dashboard_figures import problems

    def figures(drift_note: str, listed: list[str]) -> dict[str, Any]:
        kinds = " · ".join(f"{listed.count(k)} {k}" for k in sorted(set(listed)))
        return {"tiles": {"drift": {"value": "0.395", "note": drift_note},
                          "alerts": {"value": str(len(listed)), "note": kinds or "none firing"}},
                "alerts_listed": listed, "alerts_more": 0}

    assert problems(figures("worst group PSI", []))  # the old tile said no more
    assert not problems(figures("worst group PSI, not alerting", []))
    assert not problems(figures("worst group PSI · 2 drift alerts firing", ["drift", "drift"]))
    assert problems(figures("worst group PSI, not alerting", ["drift"]))
    wrong_count = figures("worst group PSI, not alerting", [])
    wrong_count["tiles"]["alerts"]["value"] = "3"
    assert problems(wrong_count)
    # a list cut at 12 is judged by the tile's counts by kind
    cut = figures("worst group PSI · 5 drift alerts firing", ["accuracy"] * 12)
    cut["tiles"]["alerts"] = {"value": "17", "note": "12 accuracy · 5 drift"}
    cut["alerts_more"] = 5
    assert not problems(cut)
    cut["tiles"]["drift"]["note"] = "worst group PSI, not alerting"
    assert problems(cut)
