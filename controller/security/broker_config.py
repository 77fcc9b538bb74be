"""Mosquitto configuration generated from the protocol: TLS listeners, client certificates (or
passwords), and an ACL that confines every device to its own topics.

``render_acl`` and ``render_mosquitto_conf`` are pure; ``write_broker_dir`` puts them next to the
CA certificate, the broker's server certificate, the CRL and the password file, and
``sync_broker_dir`` refreshes the CRL and password file there after an enrollment or revocation.

The ACL is derived from :class:`~edgewise_wire.topics.DeviceChannel`: each channel is either
read by the device (``desired``, ``ack``) or written by it (``reported``, ``presence``,
``telemetry``, ``art/req``). Mosquitto's ``pattern`` lines substitute ``%u`` with the client's
user name, which is the certificate's CN (``use_identity_as_username``) or the password user: a
device named ``pi-01`` may touch ``{root}/dev/pi-01/...`` only. All devices may read the
artifact chunk topics ``{root}/art/#`` (chunks are broadcast; a device learns nothing from them
that the signed manifest does not already say). The controller's identity may read and write all
of ``{root}/#``. ``{root}`` is the fleet's topic root (``topic_root``, default ``ew/v1``).
"""

from __future__ import annotations

import grp
import json
import logging
import os
import shlex
import signal
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from controller.errors import ValidationError
from controller.security.pki import (
    FleetCA,
    _write_private,
    _write_public,
    controller_identity,
)
from edgewise_wire.errors import TopicError
from edgewise_wire.topics import ROOT, DeviceChannel, validate_topic_root

log = logging.getLogger("edgewise.security")

READ, WRITE = "read", "write"

# Who sends what, per device channel (by its topic suffix). Channels the design names but the
# protocol does not define yet are listed too, so adding them to DeviceChannel needs no change
# here; a channel missing from this table is left out of the ACL (denied) and logged.
DEVICE_ACCESS: dict[str, str] = {
    "desired": READ,
    "agent/desired": READ,  # the signed agent version the device's launcher should run
    "ack": READ,
    "cmd": READ,
    "reported": WRITE,
    "presence": WRITE,
    "telemetry": WRITE,
    "art/req": WRITE,
    "metrics": WRITE,
    "cmd/res": WRITE,
    "logs/req": READ,  # the controller asks for a device's recent log lines
    "logs": WRITE,  # and the device answers
    "experiment": READ,  # a shadow or A/B order (its windows travel as telemetry)
    "sampling": READ,  # the share of predictions the device records, set per group
}

CONF_NAME = "edgewise.conf"
STATE_NAME = "broker.json"


@dataclass(frozen=True)
class BrokerSettings:
    """What ``edgewise broker config`` was asked for; kept in ``pki/broker.json`` so that
    enrollment and revocation know where the broker's copy of the CRL and passwords lives."""

    out_dir: str
    hostnames: list[str] = field(default_factory=list)
    cert_port: int = 8883
    password_port: int | None = None  # a second TLS listener for user name + password devices
    bind: str = ""  # listener address; empty: every interface
    reload_command: str | None = None  # e.g. "systemctl reload mosquitto"
    controller_replicas: int = 1  # one MQTT identity (and certificate) per controller process
    # group that owns the broker's files (e.g. "mosquitto"): the broker drops root before it
    # re-reads the CRL, password file and ACL on SIGHUP, so they must be readable by it
    group: str | None = None
    topic_root: str = ROOT  # the fleet's topic root: the ACL's patterns are under it

    def __post_init__(self) -> None:
        try:
            validate_topic_root(self.topic_root)
        except TopicError as exc:
            raise ValidationError(f"topic root: {exc}") from None

    @property
    def controllers(self) -> tuple[str, ...]:
        return tuple(controller_identity(i) for i in range(1, self.controller_replicas + 1))


def device_acl_lines(channels: list[DeviceChannel] | None = None, *,
                     root: str = ROOT) -> list[str]:
    root = validate_topic_root(root)
    lines = []
    for channel in channels if channels is not None else list(DeviceChannel):
        access = DEVICE_ACCESS.get(channel.value)
        if access is None:
            log.warning("device channel %r has no access rule: devices may not use it",
                        channel.value)
            continue
        lines.append(f"pattern {access} {root}/dev/%u/{channel.value}")
    lines.append(f"pattern read {root}/art/#")
    # the retained key update (edgewise_wire.key_update): every device reads it, none writes it
    lines.append(f"pattern read {root}/trust/keys")
    return lines


def render_acl(controllers: tuple[str, ...] = (controller_identity(),),
               denied: list[str] | tuple[str, ...] = (), *, root: str = ROOT) -> str:
    """The ACL file. ``denied``: revoked identities, refused everything; Mosquitto checks an
    identity's deny lines before the patterns, and re-reads the ACL for open connections on
    SIGHUP, so this cuts off a revoked device that is still connected (the CRL only stops new
    connections)."""
    out = [
        "# Edgewise broker ACL, generated by `edgewise broker config`: regenerate, do not edit.",
        "# Mosquitto replaces %u by the client's user name: the CN of its certificate",
        "# (use_identity_as_username) or its password-file user. A device may use only",
        f"# {root}/dev/<its id>/... and read artifact chunks; anything else is refused.",
        "",
    ]
    if denied:
        out.append("# revoked identities: nothing at all, even on a connection opened before")
        for name in denied:
            out += [f"user {name}", "topic deny #", ""]
    for name in controllers:
        out += [f"user {name}", f"topic readwrite {root}/#", ""]
    out += device_acl_lines(root=root)
    return "\n".join(out) + "\n"


def render_mosquitto_conf(settings: BrokerSettings) -> str:
    d = Path(settings.out_dir)
    bind = f" {settings.bind}" if settings.bind else ""
    tls = [f"cafile {d / 'ca.crt'}", f"certfile {d / 'server.crt'}", f"keyfile {d / 'server.key'}"]
    lines = [
        "# Edgewise broker settings, generated by `edgewise broker config`: regenerate, do not",
        "# edit. Include it from mosquitto.conf (Debian: a link in /etc/mosquitto/conf.d/).",
        "# Reload the broker (SIGHUP: `systemctl reload mosquitto`) after every",
        "# `edgewise devices revoke`: Mosquitto reads the CRL and the password file again then.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"acl_file {d / 'acl'}",
        f"password_file {d / 'passwd'}",
        # a controller or a fleet-wide broadcast needs far more than the default 1,000
        "max_queued_messages 100000",
        # small packets (acks, reports) must not wait for a delayed ACK behind a chunk stream
        "set_tcp_nodelay true",
        "",
        "# devices and the controller, each with a client certificate from the fleet CA;",
        "# the certificate's CN becomes the MQTT user name, and the client id too: a client",
        "# cannot take over (disconnect) another identity's session by reusing its client id",
        f"listener {settings.cert_port}{bind}",
        *tls,
        f"crlfile {d / 'crl.pem'}",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
    ]
    if settings.password_port is not None:
        lines += [
            "",
            "# devices enrolled with a user name and password (TLS, server certificate only)",
            f"listener {settings.password_port}{bind}",
            *tls,
            "require_certificate false",
            "use_username_as_clientid true",
        ]
    return "\n".join(lines) + "\n"


def write_broker_dir(ca: FleetCA, settings: BrokerSettings) -> list[Path]:
    """Write the broker's files into ``settings.out_dir`` and remember the settings.

    Also issues the broker's server certificate (for ``settings.hostnames``) and the
    controller's client certificate (``controller/``), replacing earlier ones.
    """
    if not settings.hostnames:
        raise ValidationError("give the broker's host names or addresses (--hostname), as "
                              "devices will connect to them: the server certificate names them")
    out = Path(settings.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o750)
    _chgrp(out, settings.group)
    server = ca.issue_server_cert(settings.hostnames)
    ctl_dir = out / "controller"
    ctl_dir.mkdir(exist_ok=True)
    ctl_dir.chmod(0o700)  # the controller's key: not for the broker
    written = []
    # a controller keeps its certificate across regenerations (it may be running with it)
    for name in settings.controllers:
        cert, key = controller_cert_paths(out, name)
        if ca.current(name) is None or not key.exists():
            issued = ca.issue_client_cert(name, replace=True)
            _write_public(cert, issued.cert_pem)
            _write_private(key, issued.key_pem)
            written += [cert, key]
    _write_public(ctl_dir / "ca.crt", ca.ca_cert_pem())
    for name, data, secret in ((CONF_NAME, render_mosquitto_conf(settings).encode(), False),
                               ("ca.crt", ca.ca_cert_pem(), False),
                               ("server.crt", server.cert_pem, False),
                               ("server.key", server.key_pem, True)):
        _place(out / name, data, secret, settings.group)
        written.append(out / name)
    written.append(ctl_dir / "ca.crt")
    written += sync_broker_dir(ca, settings)
    _write_private(ca.dir / STATE_NAME, json.dumps(asdict(settings), indent=2).encode())
    return written


def controller_cert_paths(out_dir: Path, identity: str) -> tuple[Path, Path]:
    """Where ``write_broker_dir`` puts a controller identity's certificate and key."""
    stem = "controller" if identity == controller_identity() else identity.lstrip("_")
    return out_dir / "controller" / f"{stem}.crt", out_dir / "controller" / f"{stem}.key"


def load_broker_settings(ca: FleetCA) -> BrokerSettings | None:
    try:
        return BrokerSettings(**json.loads((ca.dir / STATE_NAME).read_text()))
    except FileNotFoundError:
        return None


def sync_broker_dir(ca: FleetCA, settings: BrokerSettings | None = None) -> list[Path]:
    """Bring the broker's directory (if one is known) up to date with the CA: the CRL, the
    password file, and the ACL (which denies revoked identities)."""
    settings = settings or load_broker_settings(ca)
    if settings is None:
        return []
    out = Path(settings.out_dir)
    if not out.is_dir():
        log.warning("broker directory %s is gone; the broker was not updated", out)
        return []
    _place(out / "crl.pem", ca.crl_path.read_bytes(), False, settings.group)
    _place(out / "passwd", ca.passwd_path.read_bytes(), True, settings.group)
    acl = render_acl(settings.controllers, ca.denied_names(), root=settings.topic_root)
    _place(out / "acl", acl.encode(), False, settings.group)
    return [out / "crl.pem", out / "passwd", out / "acl"]


def _place(path: Path, data: bytes, secret: bool, group: str | None) -> None:
    """Write a broker file: secrets 0640 (owner and the broker's group), others 0644."""
    _write_private(path, data)  # atomic; 0600 until the group is right
    _chgrp(path, group)
    path.chmod(0o640 if secret else 0o644)


def _chgrp(path: Path, group: str | None) -> None:
    if group is None:
        return
    try:
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValidationError(f"group {group!r} does not exist on this host") from None
    try:
        os.chown(path, -1, gid)
    except PermissionError:
        raise ValidationError(f"cannot give {path} to group {group!r}: run as root or as a "
                              "member of that group") from None


def reload_broker(settings: BrokerSettings | None, pid_file: Path | None = None) -> str:
    """Make the broker read the CRL and password file again; returns what was done.

    With ``pid_file``: SIGHUP to that process. Else the recorded ``reload_command``. Else
    nothing, and the message says what the operator must run.
    """
    if pid_file is not None:
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError) as exc:
            raise ValidationError(f"cannot read a process id from {pid_file}: {exc}") from None
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            raise ValidationError(f"cannot signal the broker (pid {pid}): {exc}") from None
        return f"sent SIGHUP to the broker (pid {pid})"
    if settings is not None and settings.reload_command:
        argv = shlex.split(settings.reload_command)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ValidationError(f"`{settings.reload_command}` failed: {exc}") from None
        if done.returncode != 0:
            raise ValidationError(f"`{settings.reload_command}` exited {done.returncode}: "
                                  f"{done.stderr.strip() or done.stdout.strip()}")
        return f"reloaded the broker (`{settings.reload_command}`)"
    return ("the broker was NOT reloaded: run `systemctl reload mosquitto` (or send it SIGHUP) "
            "for the change to take effect")
