"""`edgewise fleet`, `edgewise device show` and `edgewise devices ...`: the fleet at a glance and
the device registry.

Each command is one or a few REST calls (``controller/fleet/api.py``) plus rendering
(:mod:`controller.fleet.render`); ``devices enroll`` and ``devices revoke`` work on the
controller's data directory instead (the fleet CA in :mod:`controller.security`), so they run on
the controller host.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from controller.audit.store import AuditLog
from controller.cli.client import ControllerClient, ControllerClientError, local_actor
from controller.cli.common import (
    client_from,
    data_dir_option,
    emit,
    fail,
    format_table,
    json_option,
    resolve_data_dir,
    resolve_database_url,
)
from controller.cli.exit_codes import ExitCode
from controller.cli.render import is_tty, labels_text, paint
from controller.device_health.cli import device_health, device_logs
from controller.fleet.render import format_device, format_fleet_table, recent_figures

if TYPE_CHECKING:
    from controller.security.claims import ClaimStore


@click.command("fleet")
@click.option("--selector", help="Only devices whose labels match, e.g. "
              "'site=berlin,hw in (pi4,pi5)'.")
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds until Ctrl-C.")
@click.option("-n", "--interval", type=click.FloatRange(0.2, 3600), default=2.0,
              show_default=True, help="Seconds between refreshes with --watch.")
@click.option("--count", type=click.IntRange(1), default=None,
              help="With --watch: stop after this many refreshes.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON for scripts (with --watch: one JSON document per line).")
@click.pass_context
def fleet(ctx: click.Context, selector: str | None, watch: bool, interval: float,
          count: int | None, as_json: bool) -> None:
    """Show every device: online, model version, state, last seen, predictions, accuracy.

    Example: edgewise fleet --selector site=berlin --watch -n 5
    """
    if selector is not None:
        _check_selector(selector)
    client = client_from(ctx)
    colour = is_tty() and not as_json
    refreshes = 0
    try:
        while True:
            rows = with_health(client, client.devices(selector))
            if as_json:
                click.echo(json.dumps(rows, separators=(",", ":")) if watch
                           else json.dumps(rows, indent=2))
            else:
                text = format_fleet_table(rows, colour)
                if selector:
                    text += f" (selector {selector})"
                if watch:
                    if colour:
                        click.clear()
                    stamp = time.strftime("%H:%M:%S")
                    click.echo(paint(f"every {interval:g}s  {stamp}  {client.base_url}", colour,
                                      dim=True))
                click.echo(text)
            refreshes += 1
            if not watch or (count is not None and refreshes >= count):
                return
            if not colour and not as_json:
                click.echo()
            time.sleep(interval)
    except KeyboardInterrupt:
        click.echo()


def _check_selector(text: str) -> None:
    """Refuse a malformed selector here, pointing at the mistake, before any request."""
    from controller.fleet.selectors import SelectorError, parse_selector

    try:
        parse_selector(text)
    except SelectorError as exc:
        raise click.BadParameter(f"{exc}\n  {text}\n  {' ' * exc.position}^",
                                 param_hint="'--selector'") from None


@click.group("device")
def device() -> None:
    """One device's health: what it runs, its version history, its figures, its errors.

    Example: edgewise device show pi-berlin-01
    """


@device.command("show")
@click.argument("device_id")
@click.option("--history", "history_limit", type=click.IntRange(1, 500), default=10,
              show_default=True, help="How many version-history entries to show.")
@click.option("--window", type=click.FloatRange(60, 30 * 86400), default=3600.0,
              show_default=True, help="Seconds of recent figures (predictions, accuracy, ...).")
@json_option
@click.pass_context
def device_show(ctx: click.Context, device_id: str, history_limit: int, window: float,
                as_json: bool) -> None:
    """Show one device: state and version, recent figures (predictions, accuracy, latency,
    drift), version history and last errors. Labels and registration: `edgewise devices show`.

    Example: edgewise device show demo-0003 --history 20 --json
    """
    client = client_from(ctx)
    info = client.device(device_id)
    view = {"device": info,
            "recent": recent_figures(client.device_series(device_id, window, 12)),
            "history": client.device_history(device_id, history_limit),
            "errors": client.device_errors(device_id, 5)}
    health = with_health(client, [info])[0].get("health")
    if health is not None:
        view["health"] = health
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    click.echo(format_device(view, window, is_tty()))



device.add_command(device_health)
device.add_command(device_logs)


def with_health(client: ControllerClient, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with each device's newest health window as ``health`` (left out for a device
    without one, and for every row when the controller predates device health)."""
    try:
        latest = client.fleet_health([r["device_id"] for r in rows], alerts=False)["devices"]
    except ControllerClientError:
        return rows
    return [{**r, "health": latest[r["device_id"]]} if r["device_id"] in latest else r
            for r in rows]


# -- the device registry -------------------------------------------------------------------------

@click.group("devices")
def devices() -> None:
    """The device registry: list devices by selector, show one, set labels, pre-register
    and enroll or revoke their broker credentials.

    Example: edgewise devices list --selector "site=berlin,hw in (pi4,pi5)"
    """


@devices.command("list")
@click.option("--selector", help="Only devices whose labels match, e.g. 'site=berlin,!canary'.")
@json_option
@click.pass_context
def devices_list(ctx: click.Context, selector: str | None, as_json: bool) -> None:
    """List devices with their effective labels (the operator's labels override the device's).

    Example: edgewise devices list --selector "hw in (pi4,pi5)" --json
    """
    rows = client_from(ctx).devices(selector)
    table = [[d["device_id"], "online" if d["online"] else ("never seen" if not d.get("seen", True)
                                                           else "offline"),
              f"{d['active_model']}:{d['active_version']}" if d.get("active_model") else "-",
              d.get("state") or "-", d.get("device_class") or "-",
              labels_text(d.get("labels") or {})] for d in rows]
    emit(rows, as_json, format_table(["DEVICE", "ONLINE", "MODEL", "STATE", "CLASS", "LABELS"],
                                     table)
          + f"\n{len(rows)} devices" + (f" match {selector!r}" if selector else ""))


@devices.command("show")
@click.argument("device_id")
@json_option
@click.pass_context
def devices_show(ctx: click.Context, device_id: str, as_json: bool) -> None:
    """Show one device: state, versions, labels and where each label comes from.

    Example: edgewise devices show pi-berlin-01
    """
    d = client_from(ctx).device(device_id)
    lines = [f"device        {d['device_id']}",
             "online        " + ("online" if d["online"] else "offline")
             + ("" if d.get("seen", True) else " (never connected)"),
             f"state         {d.get('state') or '-'}",
             "class         " + (d.get("device_class") or "- (not reported: an older agent, or "
                                 "never connected)"),
             "active        " + (f"{d['active_model']}:{d['active_version']}"
                                  if d.get("active_model") else "-"),
             "desired       " + (f"{d['desired_model']}:{d['desired_version']}"
                                  if d.get("desired_model") else "-")
             + (f"  ({d['desired_deployment_id']})" if d.get("desired_deployment_id") else ""),
             f"last error    {d.get('last_error') or '-'}",
             f"labels        {labels_text(d.get('labels') or {})}",
             f"  own         {labels_text(d.get('device_labels') or {})}",
             f"  operator    {labels_text(d.get('operator_labels') or {})}",
             f"predictions   {d.get('predictions', 0)}"]
    emit(d, as_json, "\n".join(lines))


def _parse_label_args(args: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    set_: dict[str, str] = {}
    remove: list[str] = []
    for arg in args:
        if arg.endswith("-") and "=" not in arg:
            remove.append(arg[:-1])
        elif "=" in arg:
            key, _, value = arg.partition("=")
            set_[key.strip()] = value.strip()
        else:
            raise click.BadParameter(f"{arg!r}: write KEY=VALUE to set a label or KEY- to "
                                     "remove one")
    return set_, remove


@devices.command("label")
@click.argument("device_id")
@click.argument("labels", nargs=-1, required=True, metavar="KEY=VALUE... KEY-...")
@json_option
@click.pass_context
def devices_label(ctx: click.Context, device_id: str, labels: tuple[str, ...],
                  as_json: bool) -> None:
    """Set operator labels (KEY=VALUE, overriding the device's own) or remove them (KEY-).

    Example: edgewise devices label pi-berlin-01 canary=true tier=edge old-
    """
    set_, remove = _parse_label_args(labels)
    d = client_from(ctx).set_labels(device_id, set_, remove)
    note = f"\nnot set, nothing removed: {', '.join(d['not_set'])}" if d.get("not_set") else ""
    emit(d, as_json, f"{d['device_id']}: {labels_text(d['labels'])}{note}")


@devices.command("register")
@click.argument("device_id")
@click.argument("labels", nargs=-1, metavar="[KEY=VALUE...]")
@click.option("--note", default="", help="Free text kept with the registration.")
@json_option
@click.pass_context
def devices_register(ctx: click.Context, device_id: str, labels: tuple[str, ...], note: str,
                     as_json: bool) -> None:
    """Pre-register a device before it first connects, with operator labels; on first contact
    it matches selectors with them, and the newest matching rollout sends it its version.

    Example: edgewise devices register pi-oslo-07 site=oslo hw=pi5 --note "rack 3"
    """
    set_, remove = _parse_label_args(labels)
    if remove:
        raise click.BadParameter("a new device has no labels to remove")
    d = client_from(ctx).register(device_id, set_, note)
    emit(d, as_json, f"registered {d['device_id']}: {labels_text(d['labels'])}")



def _labels(values: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"label {item!r} must look like KEY=VALUE", ExitCode.USAGE)
        labels[key] = value
    return labels


@devices.command("enroll")
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
@json_option
@data_dir_option
def devices_enroll(device_id: str, out_dir: Path, mode: str, broker_host: str | None,
                   broker_port: int | None, days: int | None, device_class: str,
                   label_values: tuple[str, ...], agent_data_dir: str, force: bool,
                   broker_pid_file: Path | None, as_json: bool, data_dir: Path | None,
                   config_path: Path | None) -> None:
    """Issue DEVICE_ID a credential and write its bundle: agent.toml, CA, client certificate
    and key (or password), trusted manifest-signing keys. Copy it to the device's /etc/edgewise
    (deploy/install-agent.sh --bundle does).

    Example: edgewise devices enroll pi-berlin-01 --out ./bundles --label site=berlin
    """
    from controller.security.enrollment import enroll_device

    labels = _labels(label_values)
    bundle = enroll_device(
        resolve_data_dir(data_dir, config_path), device_id, out_dir, mode=mode,
        broker_host=broker_host, broker_port=broker_port, days=days, force=force,
        device_class=device_class, labels=labels, agent_data_dir=agent_data_dir,
        broker_pid_file=broker_pid_file)
    if as_json:
        emit({"device_id": device_id, "mode": bundle.mode, "broker": str(bundle.broker),
              "directory": str(bundle.directory), "archive": str(bundle.archive),
              "notes": list(bundle.notes)}, as_json)
        return
    for note in bundle.notes:
        click.echo(note)
    click.echo(f"enrolled {device_id} ({bundle.mode}, broker {bundle.broker}): "
               f"{bundle.directory}/ and {bundle.archive}")
    click.echo(f"  on the device: sudo bash install-agent.sh --bundle {bundle.archive.name}")


@devices.command("revoke")
@click.argument("device_id")
@click.option("--broker-pid-file", type=click.Path(path_type=Path),
              help="Send SIGHUP to this broker process (else the recorded --reload-command).")
@json_option
@data_dir_option
def devices_revoke(device_id: str, broker_pid_file: Path | None, as_json: bool,
                   data_dir: Path | None, config_path: Path | None) -> None:
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

    ca = FleetCA.for_data_dir(resolve_data_dir(data_dir, config_path))
    revoked = ca.revoke(device_id)
    settings = load_broker_settings(ca)
    synced = sync_broker_dir(ca, settings)
    if as_json:
        reload = reload_broker(settings, broker_pid_file)
        emit({"device_id": device_id, "kind": revoked.kind, "serial": revoked.serial,
              "broker_dir_synced": bool(synced), "reload": reload}, as_json)
        return
    click.echo(f"revoked {device_id} ({revoked.kind}"
               + (f", serial {revoked.serial}" if revoked.serial else "") + ")")
    if not synced:
        click.echo("no broker directory is known (`edgewise broker config`): copy "
                   f"{ca.crl_path} and {ca.passwd_path} to the broker yourself")
    click.echo(reload_broker(settings, broker_pid_file))



@devices.command("pending")
@json_option
@data_dir_option
def devices_pending(as_json: bool, data_dir: Path | None, config_path: Path | None) -> None:
    """Enrollment requests waiting for an operator (claim tokens with --approval manual).

    Example: edgewise devices pending --json
    """
    from controller.security.claims import ClaimStore

    rows = ClaimStore.for_data_dir(resolve_data_dir(data_dir, config_path)).pending()
    emit(rows, as_json, "\n".join(
        f"{r['device_id']}  token={r['token']}  group={r['group']}  "
        f"key sha256 {r['public_key_sha256'][:16]}" for r in rows) or "no pending requests")


@contextmanager
def _enrollment_decisions(data_dir: Path | None, config_path: Path | None
                          ) -> Iterator[tuple[ClaimStore, AuditLog]]:
    """The claims and the controller's audit log, for a decision made on the controller host.
    The database is opened before anything is decided, so no decision goes unaudited."""
    from sqlalchemy.engine import make_url

    from controller.errors import NotFoundError
    from controller.security.claims import ClaimStore
    from controller.storage.db import Database, normalize_url

    url = resolve_database_url(data_dir, config_path)
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database \
            and not Path(parsed.database).exists():
        raise NotFoundError("controller database for the audit log (check --data-dir or "
                            "--config)", parsed.database)
    db = Database(url)
    try:
        yield ClaimStore.for_data_dir(resolve_data_dir(data_dir, config_path)), AuditLog(db)
    finally:
        db.dispose()


def _host_actor() -> str:
    """Who decided, for the audit log: the user on the controller host (no API token)."""
    return f"host:{local_actor()}"


@devices.command("approve")
@click.argument("device_id")
@json_option
@data_dir_option
def devices_approve(device_id: str, as_json: bool, data_dir: Path | None,
                    config_path: Path | None) -> None:
    """Issue the certificate a pending device asked for; it gets it when it asks again.
    Written to the audit log (enrollment.approved) as host:USER@HOST.

    Example: edgewise devices approve pi-berlin-07
    """
    from controller.security.approvals import approve_enrollment

    with _enrollment_decisions(data_dir, config_path) as (claims, audit):
        outcome = approve_enrollment(claims, audit, device_id, _host_actor())
    emit({"device_id": device_id, "status": outcome.status}, as_json,
         f"approved {device_id}: its certificate is issued")


@devices.command("reject")
@click.argument("device_id")
@click.option("--reason", default="rejected by an operator", show_default=True)
@json_option
@data_dir_option
def devices_reject(device_id: str, reason: str, as_json: bool, data_dir: Path | None,
                   config_path: Path | None) -> None:
    """Refuse a pending enrollment request (its place in the token's quota is given back).
    Written to the audit log (enrollment.rejected) as host:USER@HOST.

    Example: edgewise devices reject pi-unknown-3 --reason "not ours"
    """
    from controller.security.approvals import reject_enrollment

    with _enrollment_decisions(data_dir, config_path) as (claims, audit):
        outcome = reject_enrollment(claims, audit, device_id, reason, _host_actor())
    emit({"device_id": device_id, "status": outcome.status, "reason": outcome.reason},
         as_json, f"rejected {device_id}: {reason}")


COMMANDS = (fleet, device, devices)
