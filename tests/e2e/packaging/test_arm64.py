"""The agent on arm64 under qemu-user emulation (deploy/check-arm64.sh), opt-in.

Opt-in because it needs root, binfmt_misc and qemu-user-static, and its first run builds an
arm64 Debian root (~4 min) and installs the agent's wheels under emulation (~1 min); with the
root cached in /var/cache/edgewise a run takes ~25 s. Run it with EDGEWISE_ARM64_CHECK=1."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.harness.paths import REPO_ROOT

pytestmark = [pytest.mark.slow]

SCRIPT = REPO_ROOT / "deploy" / "check-arm64.sh"


@pytest.mark.skipif(os.environ.get("EDGEWISE_ARM64_CHECK") != "1",
                    reason="opt-in: set EDGEWISE_ARM64_CHECK=1 (needs root, debootstrap, "
                           "qemu-user-static, binfmt-support; see deploy/check-arm64.sh)")
def test_agent_installs_and_passes_its_unit_tests_on_arm64() -> None:
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=1800)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert "arm64 wheels: aarch64" in output
    assert "onnxruntime on arm64 predicts [0, 2]" in output
    assert "==> arm64 check passed" in output
