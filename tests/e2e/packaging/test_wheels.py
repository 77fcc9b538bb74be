"""The project as a user installs it: `python -m build` makes an sdist and a wheel (the wheel
built from the sdist, so a file missing from the sdist shows here), and the wheel installs in
fresh virtual environments with the `agent` and the `controller` extras.

pip resolves the dependencies from the index this machine is configured with (pip.conf,
PIP_INDEX_URL, PIP_FIND_LINKS; PIP_NO_INDEX=1 with PIP_FIND_LINKS=a-wheelhouse works offline).
The build itself is isolated: setuptools comes from that index too."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.harness.paths import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # installs on a loaded machine

# dependencies only the controller has reasons to import: a device must not carry them
CONTROLLER_ONLY_CORE = {"sqlalchemy", "fastapi", "cryptography", "uvicorn", "scikit-learn"}


def _run(argv: list[str | Path], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO_ROOT)


def _requirement_name(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def _extras() -> dict[str, set[str]]:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    return {extra: {_requirement_name(r) for r in requirements}
            for extra, requirements in extras.items()}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = _run([sys.executable, "-m", "build", "--outdir", out, REPO_ROOT], timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    wheels = list(dist.glob("edgewise-*-py3-none-any.whl"))
    assert len(wheels) == 1, list(dist.iterdir())
    return wheels[0]


def _fresh_venv(where: Path, requirement: str) -> Path:
    made = _run([sys.executable, "-m", "venv", where], timeout=120)
    assert made.returncode == 0, made.stderr
    installed = _run([where / "bin" / "python", "-m", "pip", "install", "--quiet", requirement],
                     timeout=900)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return where / "bin"


def _installed(bin_dir: Path) -> set[str]:
    listed = _run([bin_dir / "python", "-m", "pip", "list", "--format", "json"], timeout=120)
    assert listed.returncode == 0, listed.stderr
    return {_requirement_name(p["name"]) for p in json.loads(listed.stdout)}


def test_build_makes_an_sdist_and_a_wheel_with_the_packages_and_their_data(
        dist: Path, wheel: Path) -> None:
    assert len(list(dist.glob("edgewise-*.tar.gz"))) == 1, list(dist.iterdir())
    names = zipfile.ZipFile(wheel).namelist()
    for package in ("edge_agent", "edgewise_wire", "edgewise_monitoring", "edgewise_mqtt",
                    "controller", "converters", "simulator"):
        assert f"{package}/__init__.py" in names, package
    # package data the controller serves or reads at run time
    assert any(n.startswith("controller/") and n.endswith(".html") for n in names)
    assert not any(n.startswith("tests/") for n in names), "the tests are not part of the wheel"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "edgewise-agent = edge_agent.daemon:main" in scripts
    assert "edgewise = controller.app.entry:main" in scripts


def test_agent_extra_installs_the_agent_without_the_controllers_dependencies(
        wheel: Path, tmp_path: Path) -> None:
    bin_dir = _fresh_venv(tmp_path / "agent", f"edgewise[agent] @ {wheel.as_uri()}")
    helped = _run([bin_dir / "edgewise-agent", "--help"], timeout=120)
    assert helped.returncode == 0, helped.stderr
    assert "--config" in helped.stdout
    installed = _installed(bin_dir)
    extras = _extras()
    assert extras["agent"] <= installed, extras["agent"] - installed
    controller_only = (extras["controller"] - extras["agent"] - {"edgewise"}) | CONTROLLER_ONLY_CORE
    assert not installed & controller_only, f"the agent pulled {sorted(installed & controller_only)}"
    # the operator's command, installed here too, says what it needs in one line
    refused = _run([bin_dir / "edgewise", "--help"], timeout=120)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.count("\n") == 1 and "[controller] extra" in refused.stderr
    # the agent's modules import with only its own dependencies present
    imported = _run([bin_dir / "python", "-c",
                     "import edge_agent.agent, edge_agent.daemon, edge_agent.runtime"], timeout=120)
    assert imported.returncode == 0, imported.stderr


def test_controller_extra_installs_both_commands(wheel: Path, tmp_path: Path) -> None:
    bin_dir = _fresh_venv(tmp_path / "controller", f"edgewise[controller] @ {wheel.as_uri()}")
    for command, expected in (("edgewise", "controller"), ("edgewise-agent", "--config")):
        helped = _run([bin_dir / command, "--help"], timeout=120)
        assert helped.returncode == 0, helped.stderr
        assert expected in helped.stdout
    checked = _run([bin_dir / "python", "-m", "pip", "check"], timeout=120)
    assert checked.returncode == 0, checked.stdout
