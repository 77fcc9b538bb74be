"""The files in deploy/: the systemd units, the shell scripts, the example configurations and
the compose file are checked with the tools that judge them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controller.config import load_controller_config
from controller.errors import ValidationError
from controller.security.auth import TokenStore, check_exposure
from controller.security.broker_config import BrokerSettings, render_acl, render_mosquitto_conf
from tests.harness.paths import REPO_ROOT
from tests.harness.secure_fleet import require_tool

DEPLOY = REPO_ROOT / "deploy"
UNITS = {"edgewise-agent.service": ("/opt/edgewise-agent/bin/edgewise-agent", "edgewise-agent"),
         "edgewise-controller.service": ("/opt/edgewise/bin/edgewise", "edgewise")}
SCRIPTS = [DEPLOY / "install-agent.sh", DEPLOY / "check-arm64.sh",
           DEPLOY / "compose" / "entrypoint.sh"]


def _systemd_analyze() -> str:
    return require_tool("systemd-analyze", shutil.which("systemd-analyze"),
                        "apt-get install systemd")


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_systemd_unit_passes_verify(unit: str, tmp_path: Path) -> None:
    """`systemd-analyze verify` also checks that ExecStart's program exists; outside a real
    install it does not, so the unit is verified with that one path pointing at this checkout's
    own entry point (the full, unchanged verification runs in test_install_chroot)."""
    tool = _systemd_analyze()
    installed, script = UNITS[unit]
    here = Path(sys.executable).parent / script
    assert here.exists(), f"{here} missing: pip install -e . provides it"
    text = (DEPLOY / "systemd" / unit).read_text()
    assert installed in text
    local = tmp_path / unit
    local.write_text(text.replace(installed, str(here)))
    done = subprocess.run([tool, "verify", str(local)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_systemd_unit_is_sandboxed(unit: str) -> None:
    text = (DEPLOY / "systemd" / unit).read_text()
    for directive in ("ProtectSystem=strict", "NoNewPrivileges=true", "PrivateTmp=true",
                      "ProtectHome=true", "CapabilityBoundingSet=\n", "StateDirectory=",
                      "User=", "Restart="):
        assert directive in text, f"{unit} lacks {directive.strip()}"
    tool = _systemd_analyze()
    done = subprocess.run([tool, "security", "--offline=true", str(DEPLOY / "systemd" / unit)],
                          capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout + done.stderr)
    assert match, done.stdout[-2000:] + done.stderr
    assert float(match.group(1)) <= 2.0, f"exposure {match.group(1)} (0 best, 10 worst)"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_pass_shellcheck(script: Path) -> None:
    tool = require_tool("shellcheck", shutil.which("shellcheck"), "apt-get install shellcheck")
    done = subprocess.run([tool, "--severity=style", str(script)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout


def test_install_script_refuses_without_a_bundle() -> None:
    env = {**os.environ, "PATH": os.environ.get("PATH", "")}
    done = subprocess.run(["bash", str(DEPLOY / "install-agent.sh")], capture_output=True,
                          text=True, timeout=30, env=env)
    assert done.returncode == 1
    expected = "--bundle is required" if os.geteuid() == 0 else "run as root"
    assert expected in done.stderr, done.stderr
    helped = subprocess.run(["bash", str(DEPLOY / "install-agent.sh"), "--help"],
                            capture_output=True, text=True, timeout=30)
    assert helped.returncode == 0 and "--bundle PATH" in helped.stdout


@pytest.mark.parametrize("machine", ["armv7l", "armv6l"])
def test_install_script_refuses_32_bit_arm_before_installing(machine: str, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the script refuses a non-root user before it looks at the machine")
    shim = tmp_path / "bin"
    shim.mkdir()
    uname = shim / "uname"  # the Pi's answer, for this run of the script only
    uname.write_text(f'#!/bin/sh\n[ "$1" = -m ] && echo {machine} && exit 0\n'
                     'exec /usr/bin/uname "$@"\n')
    uname.chmod(0o755)
    bundle = tmp_path / "pi-01.tar.gz"
    bundle.write_bytes(b"")
    env = {**os.environ, "PATH": f"{shim}:{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", str(DEPLOY / "install-agent.sh"), "--bundle", str(bundle),
                           "--no-apt"], capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"32-bit ARM system ({machine})" in done.stderr, done.stderr
    assert "64-bit Raspberry Pi OS" in done.stderr
    assert "==>" not in done.stdout, "it did something before refusing"


def test_mosquitto_examples_are_the_generators_output() -> None:
    settings = BrokerSettings(out_dir="/etc/mosquitto/edgewise", hostnames=["mqtt.example.net"],
                              password_port=8884, group="mosquitto")
    assert (DEPLOY / "mosquitto" / "edgewise.conf.example").read_text() == \
        render_mosquitto_conf(settings)
    assert (DEPLOY / "mosquitto" / "acl.example").read_text() == render_acl(settings.controllers)


def test_controller_example_config_loads_and_needs_a_token(tmp_path: Path) -> None:
    config = load_controller_config(DEPLOY / "controller.toml.example")
    assert config.broker.port == 8883 and config.broker.tls_cert
    assert config.http_tls_cert and config.http_tls_key
    assert config.dashboard_public is False
    local = load_controller_config(DEPLOY / "controller.toml.example", data_dir=tmp_path)
    with pytest.raises(ValidationError, match="no API token"):
        check_exposure(local)  # 0.0.0.0 without a token: refused
    TokenStore.for_data_dir(tmp_path).create("ops", "admin")
    check_exposure(local)


def test_compose_file_is_valid_yaml_with_the_three_services() -> None:
    """Docker cannot run here (no daemon), so this checks the file's structure only."""
    compose_dir = DEPLOY / "compose"
    spec = yaml.safe_load((compose_dir / "compose.yaml").read_text())
    services = spec["services"]
    assert set(services) == {"controller", "mosquitto", "postgres"}
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (compose_dir / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in spec["volumes"], f"{name} uses undeclared volume {source}"
    assert services["controller"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert (DEPLOY.parent / services["controller"]["build"]["dockerfile"]).exists()
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"].startswith("/run/secrets")
    config = load_controller_config(compose_dir / "controller.toml")
    assert config.broker.host == "mosquitto" and config.broker.tls_ca
    mosquitto_conf = (compose_dir / "mosquitto.conf").read_text()
    assert "include_dir /broker" in mosquitto_conf
