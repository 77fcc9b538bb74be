"""Security commands of `edgewise`: device enrollment and revocation, the fleet CA, the broker's
configuration, manifest-signing keys, API tokens, and `edgewise login`.

Everything except `login`/`logout` works on the controller's data directory (``--data-dir``,
``EDGEWISE_DATA_DIR``, or the ``data_dir`` of ``--config``) and so runs on the controller host,
as the controller's user: a REST API token cannot enroll devices or mint tokens.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from controller.errors import EdgewiseError

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> None:
    click.echo(click.style("error: ", fg="red", bold=True) + message, err=True)
    sys.exit(1)


def _data_dir_option(func: F) -> F:
    func = click.option("--config", "config_path", type=click.Path(path_type=Path, exists=True),
                        help="Controller TOML config: use its data_dir.")(func)
    return click.option("--data-dir", type=click.Path(path_type=Path), envvar="EDGEWISE_DATA_DIR",
                        help="The controller's data directory (env EDGEWISE_DATA_DIR; default "
                             "./edgewise-data).")(func)


def _resolve_data_dir(data_dir: Path | None, config_path: Path | None) -> Path:
    if data_dir is not None:
        return data_dir
    from controller.config import ControllerConfig, load_controller_config

    if config_path is not None:
        return load_controller_config(config_path).data_dir
    return ControllerConfig().data_dir


class _SecurityGroup(click.Group):
    """Library errors become one line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (EdgewiseError, OSError) as exc:
            _fail(str(exc))


def _run(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (EdgewiseError, OSError) as exc:
        _fail(str(exc))


# -- saved CLI credentials -------------------------------------------------------------------

def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edgewise" / "credentials.json"


def _load_credentials() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(credentials_path().read_text())
        return data
    except (OSError, ValueError):
        return {}


def _save_credentials(data: dict[str, Any]) -> None:
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def resolve_credentials(url: str, token: str | None) -> tuple[str | None, str | None]:
    """(token, CA file) for ``url``: ``--token``/``EDGEWISE_API_TOKEN`` first, else what
    ``edgewise login`` saved; the CA from ``EDGEWISE_CA_CERT`` or the login."""
    saved = _load_credentials().get(url.rstrip("/"), {})
    ca = os.environ.get("EDGEWISE_CA_CERT") or saved.get("ca_cert")
    return token or saved.get("token"), ca


@click.command("login")
@click.option("--token-stdin", is_flag=True, help="Read the token from standard input.")
@click.option("--ca-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CA certificate of an https controller (the fleet CA's ca.crt).")
@click.pass_context
def login(ctx: click.Context, token_stdin: bool, ca_cert: Path | None) -> None:
    """Check an API token against the controller and save it for later commands.

    The token is kept in ~/.config/edgewise/credentials.json (mode 0600), per controller URL.

    Example: edgewise --controller https://ctl.example.net:8700 login --ca-cert ca.crt
    """
    from controller.client import ControllerClient, ControllerClientError

    url = ctx.find_root().obj["url"].rstrip("/")
    token = (sys.stdin.readline() if token_stdin
             else click.prompt("API token", hide_input=True)).strip()
    if not token:
        _fail("no token given")
    ca = str(ca_cert.resolve()) if ca_cert else os.environ.get("EDGEWISE_CA_CERT")
    client = ControllerClient(url, token, timeout=10, ca_cert=ca)
    try:
        who = client.whoami()
    except ControllerClientError as exc:
        _fail(f"the controller refused the token: {exc}")
    finally:
        client.close()
    data = _load_credentials()
    data[url] = {"token": token, **({"ca_cert": ca} if ca else {})}
    _save_credentials(data)
    if not who.get("auth"):
        click.echo(f"saved; note: {url} does not check tokens (no token is configured there)")
    else:
        click.echo(f"logged in to {url} as {who['name']} ({who['scope']}); "
                   f"saved in {credentials_path()}")


@click.command("logout")
@click.pass_context
def logout(ctx: click.Context) -> None:
    """Forget the token saved for this controller.

    Example: edgewise --controller https://ctl.example.net:8700 logout
    """
    url = ctx.find_root().obj["url"].rstrip("/")
    data = _load_credentials()
    if data.pop(url, None) is None:
        click.echo(f"no token saved for {url}")
        return
    _save_credentials(data)
    click.echo(f"forgot the token for {url}")


# -- API tokens -----------------------------------------------------------------------------

@click.group("tokens", cls=_SecurityGroup)
def tokens() -> None:
    """API tokens for the REST API and the CLI, scoped read or admin."""


@tokens.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice(["read", "admin"]), required=True,
              help="read: views only; admin: also calls that change state.")
@_data_dir_option
def tokens_create(name: str, scope: str, data_dir: Path | None, config_path: Path | None) -> None:
    """Create a token; it is printed once and only its hash is stored. A running controller
    accepts it at once.

    Example: edgewise tokens create grafana --scope read --data-dir /var/lib/edgewise
    """
    from controller.auth import TokenStore

    token = TokenStore.for_data_dir(_resolve_data_dir(data_dir, config_path)).create(name, scope)
    click.echo(token)
    click.echo(f"token {name!r} ({scope}) created: store it now, it is not shown again; "
               "`edgewise login` saves it for the CLI", err=True)


@tokens.command("list")
@_data_dir_option
def tokens_list(data_dir: Path | None, config_path: Path | None) -> None:
    """List tokens by name, scope and creation time (never the tokens themselves).

    Example: edgewise tokens list --data-dir /var/lib/edgewise
    """
    from controller.auth import TokenStore

    rows = TokenStore.for_data_dir(_resolve_data_dir(data_dir, config_path)).list()
    if not rows:
        click.echo("no tokens (the API is open on loopback only)")
    for row in rows:
        click.echo(f"{row.name:24} {row.scope:6} {row.created_at}  {row.prefix}...")


@tokens.command("revoke")
@click.argument("name")
@_data_dir_option
def tokens_revoke(name: str, data_dir: Path | None, config_path: Path | None) -> None:
    """Revoke a token; a running controller refuses it at once.

    Example: edgewise tokens revoke grafana --data-dir /var/lib/edgewise
    """
    from controller.auth import TokenStore

    TokenStore.for_data_dir(_resolve_data_dir(data_dir, config_path)).revoke(name)
    click.echo(f"token {name!r} revoked")


# -- manifest-signing keys -------------------------------------------------------------------

@click.group("keys", cls=_SecurityGroup)
def keys() -> None:
    """The controller's Ed25519 manifest-signing keys (devices trust their public halves)."""


def _keys(data_dir: Path | None, config_path: Path | None) -> Any:
    from controller.security.signing_keys import SigningKeys

    return SigningKeys.for_data_dir(_resolve_data_dir(data_dir, config_path))


_SAFE_ROTATION = ("the safe rotation: `edgewise keys create` (trusted, not signing), give the "
                  "devices its public key (re-enroll, or copy the bundle's trusted_keys/ and "
                  "restart the agent), `edgewise keys activate NEW_ID`, later `edgewise keys "
                  "retire OLD_ID`")


@keys.command("create")
@_data_dir_option
def keys_create(data_dir: Path | None, config_path: Path | None) -> None:
    """Create a signing key: the active one if there is none yet, else trusted but not signing
    (new enrollment bundles carry it) until `edgewise keys activate`.

    Example: edgewise keys create --data-dir /var/lib/edgewise
    """
    key = _keys(data_dir, config_path).create()
    if key.active:
        click.echo(f"created signing key {key.key_id} (active)")
        return
    click.echo(f"created signing key {key.key_id}: trusted, not signing yet. Give the devices "
               "its public key (re-enroll, or copy the bundle's trusted_keys/ and restart the "
               f"agent), then `edgewise keys activate {key.key_id}`")


@keys.command("activate")
@click.argument("key_id")
@_data_dir_option
def keys_activate(key_id: str, data_dir: Path | None, config_path: Path | None) -> None:
    """Make an existing, not retired key the one that signs (from the next publish, no restart);
    the previous one stays trusted until `edgewise keys retire`.

    Devices that do not trust KEY_ID yet refuse what it signs: give them its public key first.

    Example: edgewise keys activate 3f2a9c0d11e4b5a6 --data-dir /var/lib/edgewise
    """
    new, old = _keys(data_dir, config_path).activate(key_id)
    if old is None or old.key_id == new.key_id:
        click.echo(f"signing key is {new.key_id}" + (" (it already was)" if old else ""))
        return
    click.echo(f"signing key is now {new.key_id}; {old.key_id} stays trusted until "
               f"`edgewise keys retire {old.key_id}`")


@keys.command("rotate")
@_data_dir_option
def keys_rotate(data_dir: Path | None, config_path: Path | None) -> None:
    """Create a new key and make it sign at once; the old one stays trusted until `keys retire`.

    Devices must already trust the new key, and they cannot (it is new): until each gets its
    public key (re-enroll, or copy trusted_keys/ and restart the agent) it refuses every new
    desired state and keeps serving its model. Fine where no device enforces signatures yet;
    otherwise `keys create`, distribute it, `keys activate NEW_ID`, later `keys retire OLD_ID`.

    Example: edgewise keys rotate --data-dir /var/lib/edgewise
    """
    new, old = _keys(data_dir, config_path).rotate()
    click.echo(f"signing key is now {new.key_id}"
               + (f"; {old.key_id} stays trusted until `edgewise keys retire {old.key_id}`"
                  if old else ""))
    if old is not None:
        click.echo(click.style("warning: ", fg="yellow", bold=True)
                   + f"devices that do not trust {new.key_id} yet refuse every new desired "
                   "state until they get its public key; " + _SAFE_ROTATION, err=True)


@keys.command("retire")
@click.argument("key_id")
@_data_dir_option
def keys_retire(key_id: str, data_dir: Path | None, config_path: Path | None) -> None:
    """Stop listing a key as trusted in new bundles.

    Example: edgewise keys retire 3f2a9c0d11e4b5a6 --data-dir /var/lib/edgewise
    """
    _keys(data_dir, config_path).retire(key_id)
    click.echo(f"signing key {key_id} retired")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@_data_dir_option
def keys_list(as_json: bool, data_dir: Path | None, config_path: Path | None) -> None:
    """List signing keys: id, created, retired, which one signs.

    Example: edgewise keys list --json
    """
    rows = [{"key_id": k.key_id, "active": k.active, "created_at": k.created_at,
             "retired_at": k.retired_at} for k in _keys(data_dir, config_path).all()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no signing keys: `edgewise keys create`")
    for r in rows:
        state = "active" if r["active"] else ("retired" if r["retired_at"] else "trusted")
        click.echo(f"{r['key_id']}  {state:8} created {r['created_at']}")


# -- fleet CA ------------------------------------------------------------------------------

@click.group("pki", cls=_SecurityGroup)
def pki() -> None:
    """The fleet certificate authority that issues device and server certificates."""


@pki.command("init")
@_data_dir_option
def pki_init(data_dir: Path | None, config_path: Path | None) -> None:
    """Create the fleet CA (once; enrolling a device also does it).

    Example: edgewise pki init --data-dir /var/lib/edgewise
    """
    from controller.security.pki import FleetCA

    ca = FleetCA.for_data_dir(_resolve_data_dir(data_dir, config_path))
    click.echo(f"created the fleet CA in {ca.dir}" if ca.init()
               else f"the fleet CA exists in {ca.dir}")


@pki.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@_data_dir_option
def pki_list(as_json: bool, data_dir: Path | None, config_path: Path | None) -> None:
    """List issued credentials: identity, kind, serial, expiry, revocation.

    Example: edgewise pki list --json
    """
    from dataclasses import asdict

    from controller.security.pki import FleetCA

    rows = [asdict(i) for i in FleetCA.for_data_dir(_resolve_data_dir(data_dir, config_path))
            .identities()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        status = f"revoked {r['revoked_at']}" if r["revoked_at"] else "valid"
        click.echo(f"{r['name']:28} {r['kind']:8} {r.get('serial') or '-':34} "
                   f"until {r.get('not_after') or '-':22} {status}")


@pki.command("server-cert")
@click.argument("hostnames", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Directory for server.crt, server.key and ca.crt.")
@_data_dir_option
def pki_server_cert(hostnames: tuple[str, ...], out_dir: Path, data_dir: Path | None,
                    config_path: Path | None) -> None:
    """Issue a TLS server certificate, e.g. for the controller's HTTPS API.

    Example: edgewise pki server-cert ctl.example.net 10.0.0.5 --out /etc/edgewise/api-tls
    """
    from controller.security.pki import FleetCA, _write_private, _write_public

    ca = FleetCA.for_data_dir(_resolve_data_dir(data_dir, config_path))
    ca.init()
    issued = ca.issue_server_cert(list(hostnames))
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_public(out_dir / "server.crt", issued.cert_pem)
    _write_private(out_dir / "server.key", issued.key_pem)
    _write_public(out_dir / "ca.crt", ca.ca_cert_pem())
    click.echo(f"wrote {out_dir}/server.crt, server.key, ca.crt; set http_tls_cert and "
               "http_tls_key in the controller's config")


# -- broker configuration -------------------------------------------------------------------

@click.group("broker", cls=_SecurityGroup)
def broker() -> None:
    """The MQTT broker's security configuration (Mosquitto)."""


@broker.command("config")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Directory for the broker's files, e.g. /etc/mosquitto/edgewise.")
@click.option("--hostname", "hostnames", multiple=True, required=True,
              help="Name or address devices use to reach the broker (repeatable).")
@click.option("--port", "cert_port", type=int, default=8883, show_default=True,
              help="TLS listener for client certificates.")
@click.option("--password-port", type=int, default=None,
              help="Also a TLS listener for devices enrolled with --mode password.")
@click.option("--bind", default="", help="Listen address (default: every interface).")
@click.option("--reload-command", default=None,
              help="How to reload the broker after a revocation, e.g. "
                   "'systemctl reload mosquitto'.")
@click.option("--controller-replicas", type=click.IntRange(1, 99), default=1, show_default=True,
              help="Controller processes sharing the fleet: each gets its own MQTT identity.")
@click.option("--group", default=None,
              help="Group owning the broker's files, e.g. mosquitto (it must read them after "
                   "dropping root).")
@_data_dir_option
def broker_config(out_dir: Path, hostnames: tuple[str, ...], cert_port: int,
                  password_port: int | None, bind: str, reload_command: str | None,
                  controller_replicas: int, group: str | None, data_dir: Path | None,
                  config_path: Path | None) -> None:
    """Write Mosquitto's TLS listener(s), ACL, CA, server certificate, CRL and password file,
    and the controller's own client certificate(s) (in OUT/controller/).

    Example: edgewise broker config --out /etc/mosquitto/edgewise --hostname mqtt.example.net
    """
    from controller.security.broker_config import (
        CONF_NAME,
        BrokerSettings,
        controller_cert_paths,
        write_broker_dir,
    )
    from controller.security.pki import FleetCA

    ca = FleetCA.for_data_dir(_resolve_data_dir(data_dir, config_path))
    if ca.init():
        click.echo(f"created the fleet CA in {ca.dir}")
    settings = BrokerSettings(out_dir=str(out_dir.resolve()), hostnames=list(hostnames),
                              cert_port=cert_port, password_port=password_port, bind=bind,
                              reload_command=reload_command,
                              controller_replicas=controller_replicas, group=group)
    write_broker_dir(ca, settings)
    out = out_dir.resolve()
    click.echo(f"wrote the broker configuration to {out}")
    click.echo(f"  Mosquitto: include {out / CONF_NAME} (Debian: ln -s it into "
               "/etc/mosquitto/conf.d/) and restart mosquitto"
               + ("" if group else "; the mosquitto user must be able to read the files "
                  "(--group mosquitto)"))
    for name in settings.controllers:
        cert, key = controller_cert_paths(out, name)
        click.echo(f"  controller {name}: [broker] host = \"{hostnames[0]}\", port = {cert_port}, "
                   f"tls_ca = \"{out / 'controller' / 'ca.crt'}\", tls_cert = \"{cert}\", "
                   f"tls_key = \"{key}\"")


# -- devices: enroll / revoke ---------------------------------------------------------------

def _labels(values: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"label {item!r} must look like KEY=VALUE")
        labels[key] = value
    return labels


@click.command("enroll")
@click.argument("device_id")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("."),
              show_default=True, help="Where to write DEVICE_ID/ and DEVICE_ID.tar.gz.")
@click.option("--mode", type=click.Choice(["cert", "password"]), default="cert",
              show_default=True, help="Client certificate, or user name and password.")
@click.option("--broker-host", help="Broker address for the device (default: the first "
                                    "--hostname of `edgewise broker config`).")
@click.option("--broker-port", type=int, help="Broker port (default: from the broker config).")
@click.option("--days", type=click.IntRange(1, 3650), default=None,
              help="Certificate validity in days (default 1826).")
@click.option("--device-class", default="generic", show_default=True)
@click.option("--label", "label_values", multiple=True, help="KEY=VALUE (repeatable).")
@click.option("--agent-data-dir", default="/var/lib/edgewise-agent", show_default=True,
              help="data_dir on the device.")
@click.option("--force", is_flag=True,
              help="Re-enroll: revoke the device's current credential and issue a new one.")
@click.option("--broker-pid-file", type=click.Path(path_type=Path),
              help="Send SIGHUP to this broker process when the change needs a reload.")
@_data_dir_option
def devices_enroll(device_id: str, out_dir: Path, mode: str, broker_host: str | None,
                   broker_port: int | None, days: int | None, device_class: str,
                   label_values: tuple[str, ...], agent_data_dir: str, force: bool,
                   broker_pid_file: Path | None, data_dir: Path | None,
                   config_path: Path | None) -> None:
    """Issue DEVICE_ID a credential and write its bundle: agent.toml, CA, client certificate
    and key (or password), trusted manifest-signing keys. Copy it to the device's /etc/edgewise
    (deploy/install-agent.sh --bundle does).

    Example: edgewise devices enroll pi-berlin-01 --out ./bundles --label site=berlin
    """
    from controller.security.enrollment import enroll_device

    labels = _labels(label_values)
    bundle = _run(lambda: enroll_device(
        _resolve_data_dir(data_dir, config_path), device_id, out_dir, mode=mode,
        broker_host=broker_host, broker_port=broker_port, days=days, force=force,
        device_class=device_class, labels=labels, agent_data_dir=agent_data_dir,
        broker_pid_file=broker_pid_file))
    for note in bundle.notes:
        click.echo(note)
    click.echo(f"enrolled {device_id} ({bundle.mode}, broker {bundle.broker}): "
               f"{bundle.directory}/ and {bundle.archive}")
    click.echo(f"  on the device: sudo bash install-agent.sh --bundle {bundle.archive.name}")


@click.command("revoke")
@click.argument("device_id")
@click.option("--broker-pid-file", type=click.Path(path_type=Path),
              help="Send SIGHUP to this broker process (else the recorded --reload-command).")
@_data_dir_option
def devices_revoke(device_id: str, broker_pid_file: Path | None, data_dir: Path | None,
                   config_path: Path | None) -> None:
    """Revoke DEVICE_ID's credential at the broker: its certificate goes on the CRL (or its
    password out of the password file) and the ACL denies it everything, cutting off a live
    connection too once the broker reloads.

    Example: edgewise devices revoke pi-berlin-01 --data-dir /var/lib/edgewise
    """
    from controller.security.broker_config import (
        load_broker_settings,
        reload_broker,
        sync_broker_dir,
    )
    from controller.security.pki import FleetCA

    ca = FleetCA.for_data_dir(_resolve_data_dir(data_dir, config_path))
    revoked = _run(lambda: ca.revoke(device_id))
    settings = load_broker_settings(ca)
    synced = _run(lambda: sync_broker_dir(ca, settings))
    click.echo(f"revoked {device_id} ({revoked.kind}"
               + (f", serial {revoked.serial}" if revoked.serial else "") + ")")
    if not synced:
        click.echo("no broker directory is known (`edgewise broker config`): copy "
                   f"{ca.crl_path} and {ca.passwd_path} to the broker yourself")
    click.echo(_run(lambda: reload_broker(settings, broker_pid_file)))


@click.group("devices", cls=_SecurityGroup)
def devices() -> None:
    """Devices: enroll and revoke their credentials."""


def register(cli: click.Group) -> None:
    """Add the security commands to the `edgewise` group. `devices enroll|revoke` join an
    existing `devices` group (rollouts' list/show/label) or come in a group of their own."""
    for command in (login, logout, tokens, keys, pki, broker):
        cli.add_command(command)
    group = cli.commands.get("devices")
    if not isinstance(group, click.Group):
        group = devices
        cli.add_command(group)
    group.add_command(devices_enroll)
    group.add_command(devices_revoke)
