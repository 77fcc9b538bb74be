"""deploy/install-agent.sh in a clean Debian 12 root (debootstrap), entered with chroot: it
installs python3-venv with apt, creates the service user, the virtual environment with the agent
extras (from a local wheelhouse), the configuration from an enrollment bundle and the enabled
systemd unit, which then passes `systemd-analyze verify` unchanged inside that root.

The pristine root is built once and cached in /var/cache/edgewise/bookworm-amd64 (~290 MB,
about a minute with the Debian mirror reachable); the agent's wheels are cached beside it.
Every run works on a copy. Needs root, debootstrap and network access to the Debian mirror
(apt-get inside the root) and, the first time, to PyPI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.security.enrollment import enroll_device
from tests.harness.paths import REPO_ROOT
from tests.harness.secure_fleet import require_tool

pytestmark = [pytest.mark.slow]

REPO = REPO_ROOT
CACHE = Path(os.environ.get("EDGEWISE_ROOT_CACHE", "/var/cache/edgewise"))
PRISTINE = CACHE / "bookworm-amd64"
WHEELS = CACHE / f"wheels-cp{sys.version_info[0]}{sys.version_info[1]}"
MIRROR = os.environ.get("EDGEWISE_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def _run(argv: list[str], timeout: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          **kwargs)  # type: ignore[call-overload, no-any-return]


def _pristine_root() -> Path:
    if os.geteuid() != 0:
        message = "debootstrap and chroot need root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    debootstrap = require_tool("debootstrap", shutil.which("debootstrap") or
                               (shutil.which("debootstrap", path="/usr/sbin")),
                               "apt-get install debootstrap")
    if not (PRISTINE / "usr" / "bin" / "python3").exists():
        partial = PRISTINE.with_name(PRISTINE.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        # Raspberry Pi OS-like: python3 and systemd present, python3-venv not (the script adds it)
        done = _run([debootstrap, "--variant=minbase", "--include=python3,systemd,ca-certificates",
                     "bookworm", str(partial), MIRROR], timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        partial.rename(PRISTINE)
    return PRISTINE


def _wheelhouse(tmp: Path) -> tuple[Path, Path]:
    """This checkout as a wheel, and the agent's dependencies as wheels (cached)."""
    built = tmp / "dist"
    done = _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
                 str(built), str(REPO)], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    wheel = next(built.glob("edgewise-*.whl"))
    WHEELS.mkdir(parents=True, exist_ok=True)
    done = _run([sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(WHEELS),
                 "--only-binary=:all:", f"edgewise[agent] @ {wheel.as_uri()}"], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (WHEELS / wheel.name).unlink(missing_ok=True)  # the checkout's wheel is not cached
    return wheel, WHEELS


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    pristine = _pristine_root()
    copy = tmp_path / "root"
    done = _run(["cp", "-a", str(pristine), str(copy)], timeout=300)
    assert done.returncode == 0, done.stderr
    mounts = [copy / "proc", copy / "dev"]
    subprocess.run(["mount", "-t", "proc", "proc", str(mounts[0])], check=True)
    subprocess.run(["mount", "--bind", "/dev", str(mounts[1])], check=True)
    shutil.copyfile("/etc/resolv.conf", copy / "etc" / "resolv.conf")
    try:
        yield copy
    finally:
        for mount in reversed(mounts):
            subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(copy, ignore_errors=True)


def test_install_script_in_a_clean_debian_root(root: Path, tmp_path: Path) -> None:
    wheel, wheels = _wheelhouse(tmp_path)
    stage = root / "opt" / "install"
    shutil.copytree(REPO / "deploy", stage)
    shutil.copytree(wheels, stage / "wheels")
    shutil.copy(wheel, stage)
    bundle = enroll_device(tmp_path / "controller", "pi-chroot-01", tmp_path / "bundles",
                           broker_host="mqtt.example.net", labels={"site": "lab"})
    shutil.copy(bundle.archive, stage)

    done = _run(["chroot", str(root), "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                 "HOME=/root", "LANG=C.UTF-8", "bash", "/opt/install/install-agent.sh",
                 "--bundle", "/opt/install/pi-chroot-01.tar.gz",
                 "--package", f"/opt/install/{wheel.name}",
                 "--pip-args", "--no-index --find-links /opt/install/wheels"], timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "systemd is not running here" in done.stdout
    assert "device pi-chroot-01 broker mqtt.example.net:8883" in done.stdout

    passwd = (root / "etc" / "passwd").read_text()
    user = next(line for line in passwd.splitlines() if line.startswith("edgewise-agent:"))
    assert user.endswith(":/usr/sbin/nologin")
    assert (root / "opt" / "edgewise-agent" / "bin" / "edgewise-agent").exists()
    config = root / "etc" / "edgewise" / "agent.toml"
    key = root / "etc" / "edgewise" / "device.key"
    for path in (config, key):
        mode = path.stat().st_mode & 0o777
        assert mode == 0o640, f"{path} has mode {oct(mode)}"
        assert path.stat().st_uid == 0
    unit = root / "etc" / "systemd" / "system" / "edgewise-agent.service"
    wanted = root / "etc" / "systemd" / "system" / "multi-user.target.wants" / unit.name
    assert unit.exists() and wanted.is_symlink(), "the service is not enabled"

    # the unit, unchanged, with its ExecStart now present: verified against that root
    verify = _run(["systemd-analyze", "verify", f"--root={root}", unit.name], timeout=120)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    # the agent runs as its user inside the root and reads its configuration
    ran = _run(["chroot", str(root), "runuser", "-u", "edgewise-agent", "--",
                "/opt/edgewise-agent/bin/python", "-c",
                "from pathlib import Path; from edge_agent.config import load_config; "
                "import onnxruntime; c = load_config(Path('/etc/edgewise/agent.toml')); "
                "print(c.device_id, len(c.trusted_keys), Path(c.broker.tls_key).read_bytes()[:5])"],
               timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split()[:2] == ["pi-chroot-01", "1"]
    # other users cannot read the device's key
    other = _run(["chroot", str(root), "runuser", "-u", "nobody", "--", "cat",
                  "/etc/edgewise/device.key"], timeout=60)
    assert other.returncode != 0
