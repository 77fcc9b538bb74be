"""`edgewise agent ...`: register agent bundles (prepared agent archives for the devices'
``edgewise-agent-launcher``), list them (``/agent-versions``, ``api.py``), send one to devices
at once. ``edgewise agent rollout`` (waves, a rollout of kind ``agent``) is the rollout
engine's command, ``controller/rollouts/cli.py``, added to this group by the app."""

from __future__ import annotations

import time
from pathlib import Path

import click

from controller.cli.common import client_from, emit, fail, format_table, json_option
from controller.cli.exit_codes import ExitCode, exit_codes_help


@click.group()
def agent() -> None:
    """Register agent versions for the devices' launcher to stage."""


@agent.command("push", epilog=exit_codes_help(ExitCode.OK, ExitCode.ERROR, ExitCode.USAGE))
@click.argument("archive", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--version", "version", required=True,
              help="Version label the devices report once it runs (letters, digits, '.', '+', "
                   "'_', '-'; e.g. 0.2.0). One label names one archive for good.")
@json_option
@click.pass_context
def agent_push(ctx: click.Context, archive: Path, version: str, as_json: bool) -> None:
    """Register ARCHIVE (a tar of a prepared agent: bin/edgewise-agent and what it runs, as in
    docs/deploy.md) as agent VERSION: the controller stores it in the artifact store with its
    sha256 and chunk hashes, for devices to download over the signed, resumable path.

    Pushing the same archive again under the same version is a no-op; another archive under a
    taken version is refused.

    Example: edgewise agent push agent-0.2.0.tar.gz --version 0.2.0
    """
    client = client_from(ctx)
    try:
        data = archive.read_bytes()
    except OSError as exc:
        fail(f"cannot read {archive}: {exc.strerror}", ExitCode.USAGE)
    stored = client.push_agent_version(version, data)
    emit(stored, as_json, f"registered agent {stored['version']} ({stored['size']} bytes in "
                          f"{stored['chunks']} chunks, sha256 {stored['sha256'][:12]})"
                          + ("" if stored["new"] else "; already registered"))


@agent.command("list")
@json_option
@click.pass_context
def agent_list(ctx: click.Context, as_json: bool) -> None:
    """List registered agent versions.

    Example: edgewise agent list --json
    """
    emit(client_from(ctx).list_agent_versions(), as_json, lambda rows: format_table(
        ["VERSION", "SIZE", "SHA256", "CREATED"],
        [[r["version"], r["size"], r["sha256"][:12],
          time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created_at"]))] for r in rows]))


@agent.command("deploy", epilog=exit_codes_help(ExitCode.OK, ExitCode.ERROR, ExitCode.USAGE))
@click.argument("version")
@click.option("--device", "devices", multiple=True,
              help="Device id to send it to (repeatable); default: every known device.")
@json_option
@click.pass_context
def agent_deploy(ctx: click.Context, version: str, devices: tuple[str, ...],
                 as_json: bool) -> None:
    """Send agent VERSION, signed, to devices whose agent runs under edgewise-agent-launcher:
    each verifies it, downloads the archive over the signed chunk path, checks it and stages
    it; its launcher switches under its health probation and restores the old agent if the new
    one fails it. No waves or gates: send it to a few devices first.

    Example: edgewise agent deploy 0.2.0 --device pi-berlin-01
    """
    sent = client_from(ctx).deploy_agent_version(version, list(devices) or None)
    emit(sent, as_json, f"agent {sent['version']} sent to {len(sent['devices'])} devices "
                        f"({sent['rollout_id']})")


COMMANDS = (agent,)
