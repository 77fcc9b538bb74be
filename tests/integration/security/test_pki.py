"""The fleet CA, password hashes, signing keys, the generated ACL and the enrollment bundle,
without a broker."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.app.cli import cli
from controller.errors import ConflictError, NotFoundError, ValidationError
from controller.security.broker_config import (
    DEVICE_ACCESS,
    BrokerSettings,
    render_acl,
    render_mosquitto_conf,
)
from controller.security.enrollment import enroll_device
from controller.security.passwords import hash_password, verify_password
from controller.security.pki import CONTROLLER_IDENTITY, FleetCA, controller_identity
from controller.security.signing import sign_manifest
from controller.security.signing_keys import SigningKeys
from edge_agent.config import load_config
from edgewise_wire.envelope import key_id_of, trusted_keys_from, verify_envelope
from edgewise_wire.topics import DeviceChannel


def test_ca_issues_client_certificates_that_chain_to_it(tmp_path: Path) -> None:
    ca = FleetCA(tmp_path / "pki")
    assert ca.init() is True and ca.init() is False  # once
    assert (ca.ca_key_path.stat().st_mode & 0o777) == 0o600
    issued = ca.issue_client_cert("pi-01")
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    cert.verify_directly_issued_by(ca.ca_cert())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "pi-01"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.current("pi-01") is not None and ca.current("pi-01").serial == f"{issued.serial:x}"


def test_identities_are_device_ids_or_the_controller(tmp_path: Path) -> None:
    ca = FleetCA(tmp_path / "pki")
    ca.init()
    for bad in ("-pi", "pi/01", "pi 01", "+", "#", "a" * 65, "_edgewise-controllerX"):
        with pytest.raises(ValidationError):
            ca.issue_client_cert(bad)
    ca.issue_client_cert(CONTROLLER_IDENTITY)
    ca.issue_client_cert(controller_identity(2))
    with pytest.raises(ValidationError):  # no device may take the controller's name
        enroll_device(tmp_path, CONTROLLER_IDENTITY, tmp_path / "out", broker_host="h")


def test_enrolling_twice_needs_force_and_revokes_the_old_credential(tmp_path: Path) -> None:
    ca = FleetCA(tmp_path / "pki")
    ca.init()
    first = ca.issue_client_cert("pi-02")
    with pytest.raises(ConflictError, match="--force"):
        ca.issue_client_cert("pi-02")
    second = ca.issue_client_cert("pi-02", replace=True)
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert crl.is_signature_valid(ca.ca_cert().public_key())
    assert crl.get_revoked_certificate_by_serial_number(first.serial) is not None
    assert crl.get_revoked_certificate_by_serial_number(second.serial) is None
    assert ca.denied_names() == []  # re-enrolled, so not denied as a name


def test_revocation_lists_the_serial_and_denies_the_identity(tmp_path: Path) -> None:
    ca = FleetCA(tmp_path / "pki")
    ca.init()
    issued = ca.issue_client_cert("pi-03")
    ca.issue_password("pi-04")
    ca.revoke("pi-03")
    ca.revoke("pi-04")
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(issued.serial) is not None
    assert crl.next_update_utc is not None  # Mosquitto refuses everyone once it passes
    assert "pi-04" not in ca.passwd_path.read_text()
    assert ca.denied_names() == ["pi-03", "pi-04"]
    with pytest.raises(NotFoundError):
        ca.revoke("pi-03")
    acl = render_acl(denied=ca.denied_names())
    assert "user pi-03\ntopic deny #" in acl


def test_password_hashes_are_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    hashed = hash_password("s3cret")
    assert verify_password("s3cret", hashed) and not verify_password("other", hashed)
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd not installed (comes with the mosquitto package)")
    pw = tmp_path / "pw"
    subprocess.run([tool, "-b", "-c", str(pw), "alice", "s3cret"], check=True)
    theirs = pw.read_text().strip().split(":", 1)[1]
    assert theirs.startswith("$7$") and verify_password("s3cret", theirs)


def test_every_protocol_channel_has_a_broker_access_rule() -> None:
    """A new DeviceChannel without a rule would be denied to devices by the generated ACL."""
    missing = [c.value for c in DeviceChannel if c.value not in DEVICE_ACCESS]
    assert missing == [], f"add these channels to DEVICE_ACCESS (read or write): {missing}"
    acl = render_acl()
    assert "pattern read ew/v1/dev/%u/desired" in acl
    assert "pattern write ew/v1/dev/%u/telemetry" in acl
    assert "pattern read ew/v1/art/#" in acl
    assert f"user {CONTROLLER_IDENTITY}\ntopic readwrite ew/v1/#" in acl
    assert "pattern write ew/v1/dev/%u/desired" not in acl  # devices never write desired


def test_mosquitto_conf_requires_certificates_and_maps_identity() -> None:
    conf = render_mosquitto_conf(BrokerSettings(out_dir="/etc/mosquitto/edgewise",
                                                hostnames=["mqtt"], password_port=8884))
    for line in ("allow_anonymous false", "require_certificate true",
                 "use_identity_as_username true", "use_username_as_clientid true",
                 "crlfile /etc/mosquitto/edgewise/crl.pem", "listener 8883", "listener 8884",
                 "acl_file /etc/mosquitto/edgewise/acl"):
        assert line in conf.splitlines(), line
    # options before the first listener that are listener options would open a default
    # listener on 1883 (seen with use_username_as_clientid): keep them inside the blocks
    head = conf.split("listener 8883")[0]
    assert "use_username_as_clientid" not in head


def test_signing_keys_rotate_without_a_flag_day(tmp_path: Path) -> None:
    keys = SigningKeys.for_data_dir(tmp_path)
    first, created = keys.ensure()
    assert created and first.active
    new, old = keys.rotate()
    assert old is not None and old.key_id == first.key_id and new.active
    assert [k.key_id for k in keys.trusted()] == [new.key_id, first.key_id]
    with pytest.raises(ConflictError):
        keys.retire(new.key_id)
    keys.retire(first.key_id)
    assert [k.key_id for k in keys.trusted()] == [new.key_id]
    assert (tmp_path / "signing-keys" / f"{new.key_id}.key").stat().st_mode & 0o077 == 0


def test_bundle_is_a_working_agent_config_with_the_trusted_keys(tmp_path: Path) -> None:
    keys = SigningKeys.for_data_dir(tmp_path)
    bundle = enroll_device(tmp_path, "pi-05", tmp_path / "out", broker_host="mqtt.example.net",
                           labels={"site": "berlin"}, device_class="pi4")
    assert any("created the fleet CA" in n for n in bundle.notes)
    moved = tmp_path / "elsewhere"
    shutil.copytree(bundle.directory, moved)  # paths are relative: the bundle is relocatable
    config = load_config(moved / "agent.toml")
    assert config.device_id == "pi-05" and config.device_class == "pi4"
    assert config.labels == {"site": "berlin"}
    assert (config.broker.host, config.broker.port) == ("mqtt.example.net", 8883)
    assert config.broker.tls_cert == str(moved / "device.crt")
    assert (moved / "device.key").stat().st_mode & 0o077 == 0
    cert = x509.load_pem_x509_certificate(Path(config.broker.tls_cert).read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(
        Path(config.broker.tls_ca or "").read_bytes()))
    # the trusted keys verify what the controller's active key signs
    pems = [Path(p).read_bytes() for p in config.trusted_keys]
    assert [key_id_of(p) for p in pems] == [keys.active().key_id]  # type: ignore[union-attr]
    envelope = sign_manifest({"model": "m", "version": 1}, keys.active_private_pem(),
                             expires_at=4e9)
    verify_envelope(envelope, trusted_keys_from(pems), now=1e9, device_class="pi4",
                    running_version=None)
    with tarfile.open(bundle.archive) as tar:
        assert sorted(tar.getnames()) == sorted(
            ["pi-05", "pi-05/agent.toml", "pi-05/ca.crt", "pi-05/device.crt", "pi-05/device.key",
             "pi-05/trusted_keys", f"pi-05/trusted_keys/{keys.active().key_id}.pem"])  # type: ignore[union-attr]


def test_enroll_and_revoke_from_the_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path / "data")]
    no_broker = runner.invoke(cli, ["devices", "enroll", "pi-06", "--out", str(tmp_path), *data])
    assert no_broker.exit_code == 1 and "edgewise broker config" in no_broker.output
    configured = runner.invoke(cli, ["broker", "config", "--out", str(tmp_path / "broker"),
                                     "--hostname", "mqtt.lan", "--reload-command", "true", *data])
    assert configured.exit_code == 0, configured.output
    enrolled = runner.invoke(cli, ["devices", "enroll", "pi-06", "--out", str(tmp_path / "b"),
                                   "--label", "site=lab", *data])
    assert enrolled.exit_code == 0 and "mqtt.lan:8883" in enrolled.output, enrolled.output
    again = runner.invoke(cli, ["devices", "enroll", "pi-06", "--out", str(tmp_path / "b2"),
                                *data])
    assert again.exit_code == 1 and "--force" in again.output
    revoked = runner.invoke(cli, ["devices", "revoke", "pi-06", *data])
    assert revoked.exit_code == 0 and "reloaded the broker (`true`)" in revoked.output
    assert "user pi-06\ntopic deny #" in (tmp_path / "broker" / "acl").read_text()
    unknown = runner.invoke(cli, ["devices", "revoke", "pi-nope", *data])
    assert unknown.exit_code == 1 and "not found" in unknown.output
    listed = runner.invoke(cli, ["pki", "list", *data])
    assert "pi-06" in listed.output and "revoked" in listed.output
    keys = runner.invoke(cli, ["keys", "list", "--json", *data])
    assert '"active": true' in keys.output
