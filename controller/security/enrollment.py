"""`edgewise devices enroll`: one bundle with everything a device needs to join the fleet.

A bundle is a directory (and the same as ``.tar.gz``) to copy to the device's ``/etc/edgewise``::

    agent.toml                 device id, broker address and TLS settings, trusted signing keys
    ca.crt                     the fleet CA: the device checks the broker's certificate with it
    device.crt, device.key     the device's client certificate and key (certificate mode)
    trusted_keys/KEY_ID.pem    the controller's manifest-signing public keys

Paths in ``agent.toml`` are relative to the file, so the bundle works wherever it is unpacked.
In password mode ``agent.toml`` holds the password itself and there is no client certificate.
The private key and the password exist only in the bundle: the controller keeps the certificate's
serial and the password's hash.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import ValidationError
from controller.security.broker_config import (
    BrokerSettings,
    load_broker_settings,
    reload_broker,
    sync_broker_dir,
)
from controller.security.pki import FleetCA, _write_private, _write_public, validate_identity_name
from controller.security.signing_keys import SigningKeys
from edgewise_wire.topics import ROOT, validate_device_id

MODES = ("cert", "password")
DEFAULT_AGENT_DATA_DIR = "/var/lib/edgewise-agent"


@dataclass(frozen=True)
class Bundle:
    device_id: str
    mode: str
    directory: Path
    archive: Path
    broker: str
    notes: list[str] = field(default_factory=list)  # what was created on the way, what to do next


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def render_agent_toml(device_id: str, *, broker_host: str, broker_port: int, mode: str,
                      trusted_key_files: list[str], device_class: str,
                      labels: dict[str, str], data_dir: str,
                      password: str | None = None, topic_root: str = ROOT) -> str:
    lines = [
        f"# Edgewise agent configuration for {device_id}, written by `edgewise devices enroll`.",
        "# Paths are relative to this file. Keep this directory readable by the agent only.",
        f"device_id = {_toml_str(device_id)}",
        f"data_dir = {_toml_str(data_dir)}",
        f"device_class = {_toml_str(device_class)}",
        "trusted_keys = [" + ", ".join(_toml_str(k) for k in trusted_key_files) + "]",
        # the fleet's topic root, as `edgewise broker config --topic-root` wrote the ACL for
        *([f"topic_root = {_toml_str(topic_root)}"] if topic_root != ROOT else []),
        "",
        "[broker]",
        f"host = {_toml_str(broker_host)}",
        f"port = {broker_port}",
        'tls_ca = "ca.crt"',
    ]
    if mode == "cert":
        lines += ['tls_cert = "device.crt"', 'tls_key = "device.key"']
    else:
        assert password is not None
        lines += [f"username = {_toml_str(device_id)}", f"password = {_toml_str(password)}"]
    if labels:
        lines += ["", "[labels]"] + [f"{_toml_str(k)} = {_toml_str(v)}"
                                     for k, v in sorted(labels.items())]
    return "\n".join(lines) + "\n"


def enroll_device(
    data_dir: Path,
    device_id: str,
    out_dir: Path,
    *,
    mode: str = "cert",
    broker_host: str | None = None,
    broker_port: int | None = None,
    days: int | None = None,
    force: bool = False,
    device_class: str = "generic",
    labels: dict[str, str] | None = None,
    agent_data_dir: str = DEFAULT_AGENT_DATA_DIR,
    broker_pid_file: Path | None = None,
) -> Bundle:
    """Issue ``device_id`` a credential and write its bundle to ``out_dir/device_id/``."""
    try:
        validate_device_id(device_id)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    validate_identity_name(device_id)
    if mode not in MODES:
        raise ValidationError(f"mode must be one of {MODES}, not {mode!r}")
    ca = FleetCA.for_data_dir(data_dir)
    notes = []
    if ca.init():
        notes.append(f"created the fleet CA in {ca.dir}")
    settings = load_broker_settings(ca)
    host, port = _broker_endpoint(settings, mode, broker_host, broker_port)
    keys = SigningKeys.for_data_dir(data_dir)
    key, created = keys.ensure()
    if created:
        notes.append(f"created manifest-signing key {key.key_id} in {keys.dir}")

    bundle_dir = out_dir / device_id
    if bundle_dir.exists():
        if not force:
            raise ValidationError(f"{bundle_dir} already exists: remove it or pass --force")
        shutil.rmtree(bundle_dir)
    password = None
    if mode == "cert":
        issued = ca.issue_client_cert(device_id, replace=force,
                                      **({"days": days} if days else {}))
    else:
        password = ca.issue_password(device_id, replace=force)

    bundle_dir.mkdir(parents=True)
    bundle_dir.chmod(0o700)
    (bundle_dir / "trusted_keys").mkdir()
    trusted_files = []
    for trusted in keys.trusted():
        rel = f"trusted_keys/{trusted.key_id}.pem"
        _write_public(bundle_dir / rel, trusted.public_pem)
        trusted_files.append(rel)
    _write_public(bundle_dir / "ca.crt", ca.ca_cert_pem())
    if mode == "cert":
        _write_public(bundle_dir / "device.crt", issued.cert_pem)
        _write_private(bundle_dir / "device.key", issued.key_pem)
    toml = render_agent_toml(device_id, broker_host=host, broker_port=port, mode=mode,
                             trusted_key_files=trusted_files, device_class=device_class,
                             labels=labels or {}, data_dir=agent_data_dir, password=password,
                             topic_root=settings.topic_root if settings else ROOT)
    _write_private(bundle_dir / "agent.toml", toml.encode())

    archive = out_dir / f"{device_id}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bundle_dir, arcname=device_id)
    archive.chmod(0o600)

    if force or mode == "password":
        # a replaced certificate is revoked (CRL), a new password must reach the broker
        sync_broker_dir(ca, settings)
        if settings is not None or broker_pid_file is not None:
            notes.append(reload_broker(settings, broker_pid_file))
    return Bundle(device_id, mode, bundle_dir, archive, f"{host}:{port}", notes)


def _broker_endpoint(settings: BrokerSettings | None, mode: str, host: str | None,
                     port: int | None) -> tuple[str, int]:
    if host is None:
        if settings is None or not settings.hostnames:
            raise ValidationError("the broker's address is not known yet: run `edgewise broker "
                                  "config --hostname NAME --out DIR` first, or pass --broker-host")
        host = settings.hostnames[0]
    if port is None:
        if settings is None:
            port = 8883
        elif mode == "cert":
            port = settings.cert_port
        elif settings.password_port is None:
            raise ValidationError("the broker has no password listener: run `edgewise broker "
                                  "config --password-port 8884 ...`, or pass --broker-port")
        else:
            port = settings.password_port
    return host, port
