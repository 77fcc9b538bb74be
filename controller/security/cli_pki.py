"""`edgewise pki init|list|server-cert` and `edgewise broker config`: the fleet CA and the broker's
TLS listeners, certificates and ACL (:mod:`controller.security.pki`,
:mod:`controller.security.broker_config`). Runs on the controller host, on its data directory.
"""

from __future__ import annotations

from pathlib import Path

import click

from controller.cli.common import data_dir_option, emit, json_option, resolve_data_dir


@click.group("pki")
def pki() -> None:
    """The fleet certificate authority that issues device and server certificates."""


@pki.command("init")
@json_option
@data_dir_option
def pki_init(as_json: bool, data_dir: Path | None, config_path: Path | None) -> None:
    """Create the fleet CA (once; enrolling a device also does it).

    Example: edgewise pki init --data-dir /var/lib/edgewise
    """
    from controller.security.pki import FleetCA

    ca = FleetCA.for_data_dir(resolve_data_dir(data_dir, config_path))
    created = ca.init()
    emit({"ca_dir": str(ca.dir), "created": created}, as_json,
         f"created the fleet CA in {ca.dir}" if created else f"the fleet CA exists in {ca.dir}")


@pki.command("list")
@json_option
@data_dir_option
def pki_list(as_json: bool, data_dir: Path | None, config_path: Path | None) -> None:
    """List issued credentials: identity, kind, serial, expiry, revocation.

    Example: edgewise pki list --json
    """
    from dataclasses import asdict

    from controller.security.pki import FleetCA

    rows = [asdict(i) for i in FleetCA.for_data_dir(resolve_data_dir(data_dir, config_path))
            .identities()]
    if as_json:
        emit(rows, as_json)
        return
    for r in rows:
        status = f"revoked {r['revoked_at']}" if r["revoked_at"] else "valid"
        click.echo(f"{r['name']:28} {r['kind']:8} {r.get('serial') or '-':34} "
                   f"until {r.get('not_after') or '-':22} {status}")


@pki.command("server-cert")
@click.argument("hostnames", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Directory for server.crt, server.key and ca.crt.")
@json_option
@data_dir_option
def pki_server_cert(hostnames: tuple[str, ...], out_dir: Path, as_json: bool,
                    data_dir: Path | None, config_path: Path | None) -> None:
    """Issue a TLS server certificate, e.g. for the controller's HTTPS API.

    Example: edgewise pki server-cert ctl.example.net 10.0.0.5 --out /etc/edgewise/api-tls
    """
    from controller.security.pki import FleetCA, _write_private, _write_public

    ca = FleetCA.for_data_dir(resolve_data_dir(data_dir, config_path))
    ca.init()
    issued = ca.issue_server_cert(list(hostnames))
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_public(out_dir / "server.crt", issued.cert_pem)
    _write_private(out_dir / "server.key", issued.key_pem)
    _write_public(out_dir / "ca.crt", ca.ca_cert_pem())
    emit({"hostnames": list(hostnames), "cert": str(out_dir / "server.crt"),
          "key": str(out_dir / "server.key"), "ca_cert": str(out_dir / "ca.crt")}, as_json,
         f"wrote {out_dir}/server.crt, server.key, ca.crt; set http_tls_cert and "
         "http_tls_key in the controller's config")


@click.group("broker")
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
@click.option("--topic-root", default="ew/v1", show_default=True,
              help="The fleet's MQTT topic root (the controller's and agents' topic_root): "
                   "the ACL confines devices and the controller to topics under it.")
@json_option
@data_dir_option
def broker_config(out_dir: Path, hostnames: tuple[str, ...], cert_port: int,
                  password_port: int | None, bind: str, reload_command: str | None,
                  controller_replicas: int, group: str | None, topic_root: str, as_json: bool,
                  data_dir: Path | None, config_path: Path | None) -> None:
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

    # checked (the topic root) before the CA is created
    settings = BrokerSettings(out_dir=str(out_dir.resolve()), hostnames=list(hostnames),
                              cert_port=cert_port, password_port=password_port, bind=bind,
                              reload_command=reload_command,
                              controller_replicas=controller_replicas, group=group,
                              topic_root=topic_root)
    ca = FleetCA.for_data_dir(resolve_data_dir(data_dir, config_path))
    created_ca = ca.init()
    if created_ca and not as_json:
        click.echo(f"created the fleet CA in {ca.dir}")
    write_broker_dir(ca, settings)
    out = out_dir.resolve()
    if as_json:
        controllers = []
        for name in settings.controllers:
            cert, key = controller_cert_paths(out, name)
            controllers.append({"name": name, "tls_ca": str(out / "controller" / "ca.crt"),
                                "tls_cert": str(cert), "tls_key": str(key)})
        emit({"out_dir": str(out), "include": str(out / CONF_NAME), "created_ca": created_ca,
              "hostnames": list(hostnames), "port": cert_port, "password_port": password_port,
              "controllers": controllers}, as_json)
        return
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



COMMANDS = (pki, broker)
