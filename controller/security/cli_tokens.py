"""`edgewise login|logout` and `edgewise tokens create|list|revoke`: who may call the REST API.

``login`` checks a token against the controller and saves it for later commands
(:mod:`controller.cli.credentials`); ``tokens`` works on the controller's data directory, so it
runs on the controller host, as the controller's user: a REST API token cannot mint tokens.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from controller.cli.common import data_dir_option, emit, fail, json_option, resolve_data_dir
from controller.cli.credentials import credentials_path, load_credentials, save_credentials


@click.command("login")
@click.option("--token-stdin", is_flag=True, help="Read the token from standard input.")
@click.option("--ca-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CA certificate of an https controller (the fleet CA's ca.crt).")
@json_option
@click.pass_context
def login(ctx: click.Context, token_stdin: bool, ca_cert: Path | None, as_json: bool) -> None:
    """Check an API token against the controller and save it for later commands.

    The token is kept in ~/.config/edgewise/credentials.json (mode 0600), per controller URL.

    Example: edgewise --controller https://ctl.example.net:8700 login --ca-cert ca.crt
    """
    from controller.cli.client import ControllerClient, ControllerClientError

    url = ctx.find_root().obj["url"].rstrip("/")
    token = (sys.stdin.readline() if token_stdin
             else click.prompt("API token", hide_input=True)).strip()
    if not token:
        fail("no token given")
    ca = str(ca_cert.resolve()) if ca_cert else os.environ.get("EDGEWISE_CA_CERT")
    client = ControllerClient(url, token, timeout=10, ca_cert=ca)
    try:
        who = client.whoami()
    except ControllerClientError as exc:
        fail(f"the controller refused the token: {exc}")
    finally:
        client.close()
    data = load_credentials()
    data[url] = {"token": token, **({"ca_cert": ca} if ca else {})}
    save_credentials(data)
    if as_json:
        emit({"url": url, "auth": bool(who.get("auth")), "name": who.get("name"),
              "scope": who.get("scope"), "saved_in": str(credentials_path())}, as_json)
    elif not who.get("auth"):
        click.echo(f"saved; note: {url} does not check tokens (no token is configured there)")
    else:
        click.echo(f"logged in to {url} as {who['name']} ({who['scope']}); "
                   f"saved in {credentials_path()}")


@click.command("logout")
@json_option
@click.pass_context
def logout(ctx: click.Context, as_json: bool) -> None:
    """Forget the token saved for this controller.

    Example: edgewise --controller https://ctl.example.net:8700 logout
    """
    url = ctx.find_root().obj["url"].rstrip("/")
    data = load_credentials()
    if data.pop(url, None) is None:
        emit({"url": url, "forgot": False}, as_json, f"no token saved for {url}")
        return
    save_credentials(data)
    emit({"url": url, "forgot": True}, as_json, f"forgot the token for {url}")


@click.group("tokens")
def tokens() -> None:
    """API tokens for the REST API and the CLI, scoped read or admin."""


@tokens.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice(["read", "admin"]), required=True,
              help="read: views only; admin: also calls that change state.")
@json_option
@data_dir_option
def tokens_create(name: str, scope: str, as_json: bool, data_dir: Path | None,
                  config_path: Path | None) -> None:
    """Create a token; it is printed once and only its hash is stored. A running controller
    accepts it at once.

    Example: edgewise tokens create grafana --scope read --data-dir /var/lib/edgewise
    """
    from controller.security.auth import TokenStore

    token = TokenStore.for_data_dir(resolve_data_dir(data_dir, config_path)).create(name, scope)
    emit({"name": name, "scope": scope, "token": token}, as_json, token)
    click.echo(f"token {name!r} ({scope}) created: store it now, it is not shown again; "
               "`edgewise login` saves it for the CLI", err=True)


@tokens.command("list")
@json_option
@data_dir_option
def tokens_list(as_json: bool, data_dir: Path | None, config_path: Path | None) -> None:
    """List tokens by name, scope and creation time (never the tokens themselves).

    Example: edgewise tokens list --data-dir /var/lib/edgewise
    """
    from controller.security.auth import TokenStore

    rows = TokenStore.for_data_dir(resolve_data_dir(data_dir, config_path)).list()
    if as_json:
        emit([{"name": r.name, "scope": r.scope, "created_at": r.created_at,
               "prefix": r.prefix} for r in rows], as_json)
        return
    if not rows:
        click.echo("no tokens (the API is open on loopback only)")
    for row in rows:
        click.echo(f"{row.name:24} {row.scope:6} {row.created_at}  {row.prefix}...")


@tokens.command("revoke")
@click.argument("name")
@json_option
@data_dir_option
def tokens_revoke(name: str, as_json: bool, data_dir: Path | None,
                  config_path: Path | None) -> None:
    """Revoke a token; a running controller refuses it at once.

    Example: edgewise tokens revoke grafana --data-dir /var/lib/edgewise
    """
    from controller.security.auth import TokenStore

    TokenStore.for_data_dir(resolve_data_dir(data_dir, config_path)).revoke(name)
    emit({"name": name, "revoked": True}, as_json, f"token {name!r} revoked")



COMMANDS = (login, logout, tokens)
