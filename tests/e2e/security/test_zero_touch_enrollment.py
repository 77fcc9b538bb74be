"""Zero-touch enrollment end to end: a real controller process (HTTPS API, client certificate to
the broker), a Mosquitto with the generated TLS configuration (client certificates required,
CRL, ACL), and devices that start with nothing but a claim token.

* a device makes its key pair, enrolls by claim over HTTPS, and an agent started from the
  written agent.toml connects to the broker with its certificate; its private key never left it;
* a second device on a token whose quota is used is refused;
* on a manual-approval token the device waits, the operator approves (`edgewise devices pending`,
  `approve` with --json), and it then connects;
* renewal before expiry, without an operator, and the renewed certificate connects;
* `edgewise devices revoke` still cuts the device off, and renewal is refused after it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from controller.app.cli import cli
from controller.security.claims import ClaimStore
from edge_agent.agent import EdgeAgent
from edge_agent.config import load_config
from edge_agent.enroll import EnrollError, enroll, renew_if_due
from simulator.broker import free_port
from simulator.demo import stop_process
from tests.e2e.security.test_secure_e2e import _wait_healthy
from tests.harness.secure_fleet import Client, SecureFleet
from tests.harness.waiting import wait_for

pytestmark = [pytest.mark.broker]


@pytest.fixture
def controller_url(fleet: SecureFleet, tmp_path: Path) -> Iterator[str]:
    runner = CliRunner()
    tls_dir = tmp_path / "api-tls"
    made = runner.invoke(cli, ["pki", "server-cert", "127.0.0.1", "--out", str(tls_dir),
                               "--data-dir", str(fleet.data_dir)])
    assert made.exit_code == 0, made.output
    port = free_port()
    cert, key = fleet.controller_credential()
    workdir = tmp_path / "controller"
    workdir.mkdir()
    config = workdir / "controller.toml"
    config.write_text(
        f'data_dir = "{fleet.data_dir}"\nhttp_host = "127.0.0.1"\nhttp_port = {port}\n'
        f'http_tls_cert = "{tls_dir / "server.crt"}"\nhttp_tls_key = "{tls_dir / "server.key"}"\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {fleet.cert_port}\n'
        f'tls_ca = "{fleet.ca_file}"\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    log = (workdir / "controller.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "controller.app.cli", "controller", "serve",
                             "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"https://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, url, fleet.ca_file, workdir)
        yield url
    finally:
        stop_process(proc)


def _connects(fleet: SecureFleet, device_dir: Path) -> bool:
    client = Client(fleet, cert=(str(device_dir / "device.crt"), str(device_dir / "device.key")))
    try:
        return client.connect()
    finally:
        client.close()


def test_enrollment_by_claim_quota_approval_renewal_and_revocation(
        fleet: SecureFleet, controller_url: str, tmp_path: Path) -> None:
    claims = ClaimStore.for_data_dir(fleet.data_dir)
    auto = claims.create_token("zt-auto", group="berlin", quota=1, expires_in_s=3600,
                               labels={"site": "berlin"}, device_class="pi4")
    ca = fleet.ca_file  # the device image carries the fleet CA, to check the controller's HTTPS

    # a device with nothing but the token
    first = tmp_path / "zt-1"
    toml = enroll(controller_url, auto, "zt-1", first, ca_file=ca, poll_s=0.1, timeout_s=20,
                  agent_data_dir=str(tmp_path / "zt-1-data"))
    key_pem = (first / "device.key").read_bytes()
    assert (first / "device.key").stat().st_mode & 0o077 == 0
    # the private key is nowhere on the controller's side
    for path in fleet.data_dir.rglob("*"):
        if path.is_file():
            assert key_pem.strip().splitlines()[1] not in path.read_bytes(), path
    config = load_config(toml)
    assert config.labels == {"site": "berlin", "group": "berlin"}
    assert config.device_class == "pi4" and config.trusted_keys

    async def agent_connects() -> None:
        agent = EdgeAgent(config)
        await agent.start(wait_connected=True)
        try:
            assert agent.link.connected
        finally:
            await agent.stop(drain_timeout=0)

    asyncio.run(asyncio.wait_for(agent_connects(), 30))
    assert _connects(fleet, first)

    # the token's quota (1) is used: the next device is refused, and nothing is issued to it
    with pytest.raises(EnrollError, match="403.*quota of 1"):
        enroll(controller_url, auto, "zt-2", tmp_path / "zt-2", ca_file=ca, timeout_s=5)
    assert fleet.ca.current("zt-2") is None
    # a forged token gets nothing either
    with pytest.raises(EnrollError, match="403.*unknown claim token"):
        enroll(controller_url, "ewc_forged", "zt-9", tmp_path / "zt-9", ca_file=ca, timeout_s=5)

    # a manual token: the device waits until an operator approves
    manual = claims.create_token("zt-manual", group="lab", quota=5, expires_in_s=3600,
                                 approval="manual")
    second = tmp_path / "zt-3"
    outcome: dict[str, object] = {}

    def device() -> None:
        try:
            outcome["toml"] = enroll(controller_url, manual, "zt-3", second, ca_file=ca,
                                     poll_s=0.2, timeout_s=60)
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=device)
    thread.start()
    runner = CliRunner()
    data = ["--data-dir", str(fleet.data_dir)]

    def pending() -> list[dict[str, object]]:
        result = runner.invoke(cli, ["devices", "pending", "--json", *data])
        assert result.exit_code == 0, result.output
        return [r for r in json.loads(result.output) if r["device_id"] == "zt-3"]

    rows = wait_for(pending, 30, "the request to be pending")
    assert rows[0]["token"] == "zt-manual"
    assert not (second / "device.crt").exists()
    approved = runner.invoke(cli, ["devices", "approve", "zt-3", "--json", *data])
    assert approved.exit_code == 0, approved.output
    assert json.loads(approved.output)["status"] == "issued"
    thread.join(60)
    assert "error" not in outcome, outcome
    assert _connects(fleet, second)
    again = runner.invoke(cli, ["devices", "approve", "zt-3", "--json", *data])
    assert again.exit_code == 1 and "not pending" in again.output

    # renewal: not due now; due once less than a third of the lifetime is left
    state = json.loads((first / "enrollment.json").read_text())
    assert not renew_if_due(first)
    old_cert = (first / "device.crt").read_bytes()
    # certificate times have one-second resolution: a renewal issued within the second of the
    # first certificate would end at the very same time
    time.sleep(1.1)
    assert renew_if_due(first, now=state["not_after"] - 3600)
    assert (first / "device.crt").read_bytes() != old_cert
    assert (first / "device.key").read_bytes() == key_pem  # same key, never sent
    assert json.loads((first / "enrollment.json").read_text())["not_after"] > state["not_after"]
    assert _connects(fleet, first)

    # revocation keeps working: cut off at the broker, renewal refused
    fleet.revoke("zt-1")
    assert not _connects(fleet, first)
    with pytest.raises(EnrollError, match="403.*revoked"):
        renew_if_due(first, now=time.time() + 10 ** 9)
