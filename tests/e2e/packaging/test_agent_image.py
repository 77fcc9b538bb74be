"""The agent's container image (deploy/compose/agent.Dockerfile), for amd64 and arm64.

Its instructions are checked everywhere; where a Docker daemon answers, the image is also built
for this machine's platform and the agent started in it. This project's CI has no daemon, so
there only the static checks run (the build test says so when it skips)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import uuid

import pytest

from tests.harness.paths import REPO_ROOT

DOCKERFILE = REPO_ROOT / "deploy" / "compose" / "agent.Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
            for line in lines if line and not line.startswith("#")]


def _all(name: str) -> list[str]:
    return [args for instruction, args in _instructions() if instruction == name]


def test_base_images_are_pinned_to_a_release() -> None:
    bases = [shlex.split(args) for args in _all("FROM")]
    images = [next(word for word in words if not word.startswith("--")) for words in bases]
    assert images, "no FROM"
    for image in images:
        name, _, tag = image.partition(":")
        # a full version (3.11.14), not a moving tag (latest, 3, 3.11)
        assert re.match(r"\d+\.\d+\.\d+-", tag) or "@sha256:" in image, image
    assert len(set(images)) == 1, f"the build and run stages differ: {images}"


def test_image_is_built_for_amd64_and_arm64_only() -> None:
    assert "TARGETARCH" in _all("ARG")
    guard = next(args for args in _all("RUN") if "$TARGETARCH" in args)
    assert "amd64|arm64" in guard and "exit 1" in guard
    # the pure-Python wheel is built once on the building machine, not under emulation
    assert _all("FROM")[0].startswith("--platform=$BUILDPLATFORM")


def test_agent_runs_as_an_unprivileged_user() -> None:
    users = _all("USER")
    assert users and users[-1] not in {"root", "0"}, users
    created = next(args for args in _all("RUN") if "useradd" in args)
    assert users[-1] in created and "--system" in created


def test_image_installs_the_agent_extra_from_the_wheel() -> None:
    installs = [args for args in _all("RUN") if "pip install" in args and ".whl" in args
                or "WHEEL" in args]
    assert any("edgewise[agent]" in args for args in installs), installs
    assert not any("edgewise[controller]" in args for args in _all("RUN"))
    assert any("python -m build --wheel" in args for args in _all("RUN"))


def test_entrypoint_is_the_agent_with_a_health_check() -> None:
    assert _all("ENTRYPOINT") == ['["edgewise-agent"]']
    assert "/etc/edgewise/agent.toml" in _all("CMD")[-1]
    health = _all("HEALTHCHECK")
    assert len(health) == 1 and "/v1/health" in "".join(_all("ENV")) and "urlopen" in health[0]


def test_context_leaves_local_environments_out() -> None:
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(ignored)


def _docker_daemon() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    answered = subprocess.run([docker, "info"], capture_output=True, timeout=60)
    return docker if answered.returncode == 0 else None


@pytest.mark.slow
def test_image_builds_and_starts_the_agent() -> None:
    docker = _docker_daemon()
    if docker is None:
        pytest.skip("no Docker daemon answers `docker info` here; the static checks above ran")
    tag = f"edgewise-agent-test:{uuid.uuid4().hex[:8]}"
    built = subprocess.run([docker, "build", "-f", str(DOCKERFILE), "-t", tag, str(REPO_ROOT)],
                           capture_output=True, text=True, timeout=1800,
                           env={**os.environ, "DOCKER_BUILDKIT": "1"})
    try:
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        ran = subprocess.run([docker, "run", "--rm", tag, "--help"], capture_output=True,
                             text=True, timeout=300)
        assert ran.returncode == 0, ran.stderr
        assert "--config" in ran.stdout
        user = subprocess.run([docker, "run", "--rm", "--entrypoint", "id", tag, "-u"],
                              capture_output=True, text=True, timeout=300)
        assert user.stdout.strip() not in {"", "0"}, user.stdout + user.stderr
    finally:
        subprocess.run([docker, "image", "rm", "-f", tag], capture_output=True, timeout=300)
