"""`edgewise agent ...`: register agent bundles (prepared agent archives for the devices'
``edgewise-agent-launcher``), list them (``/agent-versions``, ``api.py``), send one to devices
at once, or roll one out in waves (a rollout of kind ``agent``, run by the rollout engine)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from controller.cli.common import (
    client_from,
    emit,
    fail,
    format_table,
    json_option,
    parse_duration,
)
from controller.cli.exit_codes import ExitCode, exit_codes_help
from controller.rollouts.cli import EXIT_CODES_HELP, _budget, _durations, _share, follow
from controller.rollouts.render import render_rollout


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


@agent.command("rollout", epilog=EXIT_CODES_HELP)
@click.argument("version")
@click.option("--selector", default="", help="Which devices, by label: 'site=berlin,!canary' "
              "(default: every device).")
@click.option("--waves", default="1,10%,50%,100%", show_default=True,
              help="Cumulative wave sizes, device counts or percentages.")
@click.option("--soak", default="10m", show_default=True,
              help="Time each wave must stay healthy before the next: 10m, or one per wave: "
                   "30m,10m,10m.")
@click.option("--min-reporting", help="Share of a wave that must run VERSION, committed after "
              "the launcher's probation: 0.9 or 90% (default 0.9).")
@click.option("--max-failed", help="Failed updates a wave tolerates (the launcher restored the "
              "old agent, or the bundle was refused): a count (2), a share (0.05) or 5% "
              "(default 0).")
@click.option("--wave-timeout", help="How long a wave may take to report before that counts as "
              "a failure: 1h (default).")
@click.option("--on-gate-failure", type=click.Choice(["pause", "abort"]), default="abort",
              show_default=True, help="Send every moved device back to the agent version it "
              "ran before (abort), or stop and wait for a human (pause).")
@click.option("--priority", type=int, default=0, show_default=True,
              help="Overlapping a live agent rollout of lower priority takes its devices over.")
@click.option("--name", default="", help="A name for the rollout (default 'agent VERSION').")
@click.option("--dry-run", is_flag=True, help="Validate and show the wave plan; send nothing.")
@click.option("--wait/--no-wait", default=False, help="Show live progress until it ends.")
@click.option("--timeout", default="0", show_default=True,
              help="Stop waiting after this long (0: no limit); the rollout goes on.")
@json_option
@click.pass_context
def agent_rollout(ctx: click.Context, version: str, selector: str, waves: str, soak: str,
                  min_reporting: str | None, max_failed: str | None, wave_timeout: str | None,
                  on_gate_failure: str, priority: int, name: str, dry_run: bool, wait: bool,
                  timeout: str, as_json: bool) -> None:
    """Roll agent VERSION (registered with `edgewise agent push`) out to the devices a
    selector picks, wave by wave, like a model rollout: each wave's devices get the signed
    agent bundle, and a device counts once it runs VERSION after its launcher's probation. A
    device whose launcher restores the old agent (the new one failed its probation) counts as
    a failed update. On a gate failure (by default), `edgewise rollout abort ID`, or a pause
    followed by an abort, the devices already moved are sent the agent version each ran
    before (it must be registered too). Follow and steer it with `edgewise rollout status|
    pause|resume|abort ID`; it runs beside model rollouts (a device has one of each).

    Example: edgewise agent rollout 0.3.0 --selector site=berlin --waves 1,10%,100% --soak 15m --wait
    """
    client = client_from(ctx)
    gates: dict[str, Any] = {}
    if min_reporting is not None:
        gates["min_reporting_share"] = _share(min_reporting)
    if max_failed is not None:
        gates["max_failed_activations"] = _budget(max_failed)
    spec: dict[str, Any] = {
        "kind": "agent", "agent_version": version, "selector": selector, "waves": waves,
        "soak_seconds": _durations(soak), "on_gate_failure": on_gate_failure,
        "priority": priority, "name": name, "gates": gates}
    if wave_timeout:
        spec["wave_timeout_seconds"] = parse_duration(wave_timeout)
    view = client.create_rollout(spec, dry_run=dry_run)
    if dry_run or not wait:
        if as_json:
            emit(view, True)
            return
        click.echo("\n".join(render_rollout(view)))
        click.echo("dry run: nothing was stored or sent" if dry_run else
                   f"follow it with `edgewise rollout status {view['id']} --wait`")
        return
    if not as_json:
        click.echo(f"rollout #{view['id']} started")
    sys.exit(follow(client, str(view["id"]), parse_duration(timeout), as_json))


COMMANDS = (agent,)
