"""The whole secure setup, end to end: a controller process on HTTPS with API tokens and an
MQTT client certificate, a real agent daemon started from its enrollment bundle exactly as
written, connecting over TLS to Mosquitto with the generated ACL, and a model rolled out to it
from the CLI after `edgewise login`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from controller.app.cli import cli
from controller.cli.client import ControllerClient, ControllerClientError
from simulator.broker import free_port
from simulator.demo import stop_process
from tests.harness.secure_fleet import SecureFleet

pytestmark = [pytest.mark.broker]


def _start_controller(fleet: SecureFleet, workdir: Path, tls_dir: Path, port: int
                      ) -> subprocess.Popen[bytes]:
    cert, key = fleet.controller_credential()
    config = workdir / "controller.toml"
    config.write_text(
        f'data_dir = "{fleet.data_dir}"\nhttp_host = "127.0.0.1"\nhttp_port = {port}\n'
        f"dashboard_public = false\n"
        f'http_tls_cert = "{tls_dir / "server.crt"}"\nhttp_tls_key = "{tls_dir / "server.key"}"\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {fleet.cert_port}\n'
        f'tls_ca = "{fleet.ca_file}"\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    log = (workdir / "controller.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "controller.app.cli", "controller", "serve",
                             "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, ca: str, workdir: Path) -> None:
    client = ControllerClient(url, timeout=2, ca_cert=ca)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, (workdir / "controller.log").read_text()
            try:
                if client.health()["mqtt_connected"]:
                    return
            except ControllerClientError:
                pass
            time.sleep(0.2)
    finally:
        client.close()
    raise AssertionError(f"controller not healthy: {(workdir / 'controller.log').read_text()}")


@pytest.fixture
def iris_model() -> tuple[object, bytes]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from converters import convert_sklearn

    x, y = load_iris(return_X_y=True)
    result = convert_sklearn(LogisticRegression(max_iter=300).fit(x, y), x[:40], name="iris-sec",
                             labels=y[:40])
    return result.manifest, result.artifact


@pytest.fixture
def running(fleet: SecureFleet, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    runner = CliRunner()
    tls_dir = tmp_path / "api-tls"
    made = runner.invoke(cli, ["pki", "server-cert", "127.0.0.1", "--out", str(tls_dir),
                               "--data-dir", str(fleet.data_dir)])
    assert made.exit_code == 0, made.output
    port = free_port()
    proc = _start_controller(fleet, tmp_path, tls_dir, port)
    url = f"https://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, url, str(tls_dir / "ca.crt"), tmp_path)
        yield url, str(tls_dir / "ca.crt"), tmp_path
    finally:
        stop_process(proc)


def test_enrolled_agent_gets_a_model_over_tls_through_the_secured_api(
        fleet: SecureFleet, running: tuple[str, str, Path], iris_model: tuple[object, bytes]
) -> None:
    url, ca, workdir = running
    runner = CliRunner()
    data = ["--data-dir", str(fleet.data_dir)]
    admin = runner.invoke(cli, ["tokens", "create", "ops", "--scope", "admin", *data])
    reader = runner.invoke(cli, ["tokens", "create", "viewer", "--scope", "read", *data])
    assert admin.exit_code == 0 and reader.exit_code == 0, admin.output + reader.output
    admin_token, read_token = admin.stdout.strip(), reader.stdout.strip()

    # the CLI without a token is refused, with a clear message
    env = {"XDG_CONFIG_HOME": str(workdir / "xdg"), "EDGEWISE_CA_CERT": ca}
    refused = runner.invoke(cli, ["--controller", url, "fleet"], env=env)
    assert refused.exit_code == 1 and "401" in refused.output, refused.output
    # `edgewise login` checks the token and saves it; later commands use it
    logged = runner.invoke(cli, ["--controller", url, "login", "--token-stdin", "--ca-cert", ca],
                           input=admin_token + "\n", env={"XDG_CONFIG_HOME": env["XDG_CONFIG_HOME"]})
    assert logged.exit_code == 0 and "as ops (admin)" in logged.output, logged.output
    saved = workdir / "xdg" / "edgewise" / "credentials.json"
    assert saved.stat().st_mode & 0o077 == 0
    bad_login = runner.invoke(cli, ["--controller", url, "login", "--token-stdin", "--ca-cert", ca],
                              input="ewa_not-a-token\n", env={"XDG_CONFIG_HOME": str(workdir)})
    assert bad_login.exit_code == 1 and "refused" in bad_login.output

    # the device: its bundle, unchanged, run by the real agent daemon
    bundle = fleet.enroll("sec-e2e-pi", labels={"site": "lab"})
    agent = subprocess.Popen([sys.executable, "-m", "edge_agent.daemon", "--config",
                              str(bundle.directory / "agent.toml"), "--data-dir",
                              str(workdir / "agent-data")],
                             stdout=(workdir / "agent.log").open("ab"), stderr=subprocess.STDOUT)
    manifest, artifact = iris_model
    admin_client = ControllerClient(url, admin_token, ca_cert=ca)
    read_client = ControllerClient(url, read_token, ca_cert=ca)
    try:
        stored = admin_client.push_version(manifest, artifact)  # type: ignore[arg-type]
        with pytest.raises(ControllerClientError, match="403"):
            read_client.push_version(manifest, artifact)  # type: ignore[arg-type]
        deadline = time.monotonic() + 20
        while not any(d["device_id"] == "sec-e2e-pi" and d["online"]
                      for d in read_client.list_devices()):
            assert agent.poll() is None, (workdir / "agent.log").read_text()
            assert time.monotonic() < deadline, (
                "the enrolled agent never reached the controller over TLS; agent log:\n"
                + (workdir / "agent.log").read_text()[-3000:])
            time.sleep(0.2)
        with pytest.raises(ControllerClientError, match="403"):
            read_client.deploy("iris-sec", stored["version"], ["sec-e2e-pi"])

        rolled = runner.invoke(cli, ["--controller", url, "rollout", "start",
                                     f"iris-sec:{stored['version']}", "--wait", "--timeout", "60"],
                               env=env)
        assert rolled.exit_code == 0, (rolled.output, (workdir / "agent.log").read_text()[-3000:])
        rows = json.loads(runner.invoke(cli, ["--controller", url, "fleet", "--json"],
                                        env=env).output)
        row = next(d for d in rows if d["device_id"] == "sec-e2e-pi")
        assert (row["active_model"], row["state"]) == ("iris-sec", "active")
        assert (workdir / "agent-data" / "active.json").exists()
    finally:
        admin_client.close()
        read_client.close()
        agent.terminate()
        agent.wait(10)
    assert agent.returncode == 0, (workdir / "agent.log").read_text()[-2000:]


def test_plain_http_is_not_served_when_tls_is_configured(running: tuple[str, str, Path]) -> None:
    url, _, _ = running
    client = ControllerClient(url.replace("https://", "http://"), timeout=3)
    with pytest.raises(ControllerClientError):
        client.health()
    client.close()
    untrusted = ControllerClient(url, timeout=3)  # the system CAs do not know the fleet CA
    with pytest.raises(ControllerClientError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
        untrusted.health()
    untrusted.close()
