"""The agent on arm64 under qemu-user emulation (deploy/check-arm64.sh): installed from this
checkout's wheel with the offline recipe of docs/deploy.md, a signed manifest verified and a real
prediction made through the agent's code, and the agent's unit tests, in an arm64 Debian root
entered with chroot.

The root and the arm64 wheels are cached under ${EDGEWISE_CACHE_DIR:-~/.cache/edgewise}; the
wheels are fetched anew on every run, and the root's virtual environment is rebuilt whenever they
change, so a new release of a dependency is tested the day it appears. Measured here on a loaded
2-core machine: the first run about 13 min (7.5 of them debootstrap), a run with new wheels about
6 min, a cached run about 2 min. CI runs the bounded test set (EDGEWISE_ARM64_TESTS=quick, the
default here); `EDGEWISE_ARM64_TESTS=all` runs every agent unit test (12 min under emulation).
Needs root, debootstrap, qemu-user-static and binfmt-support; it skips only where the kernel has
no binfmt_misc (the script's exit status 77)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.harness.paths import REPO_ROOT
from tests.harness.secure_fleet import require_tool

pytestmark = [pytest.mark.slow]

SCRIPT = REPO_ROOT / "deploy" / "check-arm64.sh"
NO_BINFMT = 77


@pytest.mark.timeout(2700)  # a first run builds the root: ~8 min here, more on a slow mirror
def test_agent_installs_offline_predicts_and_passes_its_tests_on_arm64() -> None:
    if os.geteuid() != 0:
        message = "debootstrap, mount and chroot need root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    require_tool("debootstrap", shutil.which("debootstrap") or
                 shutil.which("debootstrap", path="/usr/sbin"), "apt-get install debootstrap")
    require_tool("qemu-aarch64-static", shutil.which("qemu-aarch64-static"),
                 "apt-get install qemu-user-static binfmt-support")
    env = {**os.environ, "EDGEWISE_ARM64_TESTS": os.environ.get("EDGEWISE_ARM64_TESTS", "quick")}
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=2600,
                          env=env)
    output = done.stdout + done.stderr
    # where the time went, for whoever reads the report (pytest -rA)
    print("\n".join(line for line in output.splitlines()
                    if line.startswith(("==> [", "    [")) or " passed" in line))
    if done.returncode == NO_BINFMT:
        pytest.skip(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, output[-5000:]
    assert "machine: aarch64" in output
    assert "arm64 wheels: aarch64" in output and "onnxruntime 1." in output
    assert "the agent runtime on arm64 predicts [0, 2]" in output
    assert " passed" in output and " failed" not in output
    assert "arm64 check passed" in output
