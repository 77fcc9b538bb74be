"""`edgewise rollout start|status|list|pause|resume|abort`: staged rollouts from the CLI.

Each command is one REST call (``controller/rollouts/api.py``) plus rendering
(:mod:`controller.rollouts.render`); ``--wait`` follows the rollout until it ends, and the exit
code says how it ended (:data:`EXIT_CODES_HELP`).
"""

from __future__ import annotations

import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import click

from controller.cli.client import ControllerClient
from controller.cli.common import (
    client_from,
    emit,
    fail,
    format_table,
    json_option,
    parse_duration,
)
from controller.cli.exit_codes import ExitCode, exit_codes_help
from controller.rollouts.cli_options import (
    increase_text,
    launch_options,
    plan_fields,
    steering_options,
    wave_gates,
    wave_options,
)
from controller.rollouts.render import (
    change_signature,
    outcome_lines,
    render_rollout,
    target_text,
)
from controller.rollouts.spec_parse import rollout_kind

# how `rollout start|status|abort --wait` ends (controller/cli/exit_codes.py)
EXIT_CODES_HELP = exit_codes_help(ExitCode.OK, ExitCode.ERROR, ExitCode.TIMED_OUT,
                                  ExitCode.ROLLOUT_PAUSED, ExitCode.ROLLOUT_FAILED,
                                  ExitCode.ROLLOUT_ABORTED, title="Exit codes with --wait")

_FINAL = {"completed": ExitCode.OK, "aborted": ExitCode.ROLLOUT_ABORTED,
          "failed": ExitCode.ROLLOUT_FAILED, "paused": ExitCode.ROLLOUT_PAUSED}


def load_spec_file(path: Path) -> dict[str, Any]:
    """A rollout spec from TOML (``.toml``) or JSON (anything else)."""
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise click.BadParameter(f"{path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: "
                                 f"{exc}") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: expected a table of rollout settings")
    return data


def follow(client: ControllerClient, ref: str, timeout: float, as_json: bool,
           interval: float = 0.5) -> int:
    """Show live progress until the rollout completes, aborts, fails or pauses."""
    tty = sys.stdout.isatty() and not as_json
    deadline = time.monotonic() + timeout if timeout > 0 else None
    shown = 0
    last: Any = None
    while True:
        view = client.rollout(ref)
        done = view["status"] in _FINAL
        if not as_json:
            lines = render_rollout(view)
            if tty:
                if shown:
                    click.echo(f"\x1b[{shown}F\x1b[J", nl=False)
                click.echo("\n".join(lines))
                shown = len(lines)
            elif change_signature(view) != last or done:
                click.echo("\n".join(lines))
                last = change_signature(view)
        if done:
            if as_json:
                click.echo(json.dumps(view, indent=2))
            else:
                click.echo("\n".join(outcome_lines(view)))
            return _FINAL[view["status"]]
        if deadline is not None and time.monotonic() > deadline:
            if as_json:
                click.echo(json.dumps(view, indent=2))
            click.echo(f"timed out after {timeout:g}s; the rollout goes on: "
                       f"`edgewise rollout status {view['id']} --wait`", err=as_json)
            return ExitCode.TIMED_OUT
        time.sleep(interval)



# -- rollout -----------------------------------------------------------------------------------

@click.group("rollout")
def rollout() -> None:
    """Roll a model version out to devices in waves, gated on health and ML metrics.

    Example: edgewise rollout start iris:2 --selector site=berlin --waves 1,10%,100% --wait
    """


@rollout.command("start", epilog=EXIT_CODES_HELP)
@click.argument("target", metavar="[NAME[:VERSION]]", required=False)
@click.option("--spec", "spec_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Rollout spec file (TOML or JSON, keys in docs/rollouts.md); flags override it.")
@wave_options(
    selector_help="Which devices, by label: 'site=berlin,hw in (pi4,pi5),!canary' "
                  "(default: every device).",
    waves_help="Cumulative wave sizes, counts or percentages: 1,10%,50%,100% "
               "(default without --spec: 100%, all at once).",
    soak_help="Time each wave must stay healthy before the next: 10m, or one per wave: "
              "30m,10m,10m (default without --spec: 0).",
    min_reporting_help="Share of a wave that must report the version active: 0.9 or 90% "
                       "(default 0.9).",
    max_failed_help="Failed activations a wave tolerates: a count (2), a share (0.05) or 5% "
                    "(default 0).")
@click.option("--max-accuracy-drop", type=float, help="Largest accuracy drop against the version "
              "each device ran before, from labelled feedback, e.g. 0.02 (default: off).")
@click.option("--min-labelled", type=int, help="Labels a wave needs before the accuracy gate can "
              "pass (default 30).")
@click.option("--max-p95-latency-ms", type=float, help="Largest p95 latency on any device of the "
              "wave, in ms (default: off).")
@click.option("--max-drift-psi", type=float, help="Largest input/prediction drift (PSI) on any "
              "device of the wave (default: off; needs agents that send metrics windows).")
@click.option("--max-memory-increase", help="Stop the wave when the new version's session "
              "memory exceeds the previous version's on the same devices by more than this "
              "(0.25 or 25%; median over the wave; default: off; needs agents that send device "
              "health).")
@click.option("--max-cpu-increase", help="The same for CPU time per prediction (0.25 or 25%).")
@steering_options(
    wave_timeout_help="How long a wave may take to report, or a gate to gather evidence, before "
                      "that counts as a failure: 1h (default).",
    on_gate_failure_help="Stop and wait for a human (pause, default), or send every moved "
                         "device back to its previous version (abort).",
    priority_help="Overlapping a live rollout of lower priority takes its devices over; equal "
                  "or higher refuses the start (default 0).",
    name_help="A name for the rollout (default MODEL:VERSION).")
@click.option("--probation-s", type=click.FloatRange(0, 86400), help="How long each device serves "
              "the new version under watch (errors, latency) before it commits it, in seconds; "
              "[probation] in --spec for the thresholds (default: the agent's probation_s).")
@launch_options
@click.pass_context
def rollout_start(ctx: click.Context, target: str | None, spec_file: Path | None,
                  selector: str | None, waves: str | None, soak: str | None,
                  min_reporting: str | None, max_failed: str | None,
                  max_accuracy_drop: float | None, min_labelled: int | None,
                  max_p95_latency_ms: float | None, max_drift_psi: float | None,
                  max_memory_increase: str | None, max_cpu_increase: str | None,
                  wave_timeout: str | None, on_gate_failure: str | None, priority: int | None,
                  name: str | None, probation_s: float | None, dry_run: bool, wait: bool,
                  timeout: str, as_json: bool) -> None:
    """Start rolling NAME:VERSION (default: the latest version) out to the devices a selector
    picks, wave by wave; each wave must report, soak and pass its gates before the next.

    Without --spec and --waves the version goes to every selected device at once (one wave).

    A --spec file that names `agent_version` instead of `model` starts an agent rollout, as
    `edgewise agent rollout` does (no NAME, and no model gates or probation).

    Example: edgewise rollout start iris:2 --selector site=berlin --waves 5%,25%,100% --soak 10m --max-accuracy-drop 0.02 --on-gate-failure abort --wait
    """
    client = client_from(ctx)
    spec: dict[str, Any] = load_spec_file(spec_file) if spec_file else {}
    agent = spec_file is not None and rollout_kind(spec) == "agent"
    if target and agent:
        fail(f"{spec_file} names agent_version {spec.get('agent_version')!r} (an agent rollout): "
             f"name no model ({target!r}) beside it", ExitCode.USAGE)
    if target:
        model, _, version_text = target.partition(":")
        if version_text and not version_text.isdigit():
            fail(f"version in {target!r} must be a number, e.g. {model}:2", ExitCode.USAGE)
        spec["model"] = model
        if version_text:
            spec["version"] = int(version_text)
        else:
            spec.pop("version", None)
    if not agent and "model" not in spec:
        fail("name the model: `edgewise rollout start NAME[:VERSION]`, or `model` (or "
             "`agent_version`) in --spec", ExitCode.USAGE)
    if not agent and "version" not in spec:
        spec["version"] = client.latest_version(str(spec["model"]))
    if not spec_file:
        spec.setdefault("waves", "100%")
        spec.setdefault("soak_seconds", 0)
    gates = dict(spec.get("gates") or {})
    spec.update(plan_fields(selector=selector, waves=waves, soak=soak, wave_timeout=wave_timeout,
                            on_gate_failure=on_gate_failure, priority=priority, name=name))
    gate_flags: dict[str, Any] = {
        **wave_gates(min_reporting=min_reporting, max_failed=max_failed),
        "max_accuracy_drop": max_accuracy_drop, "min_labelled": min_labelled,
        "max_p95_latency_ms": max_p95_latency_ms, "max_drift_psi": max_drift_psi,
        "max_memory_increase": increase_text(max_memory_increase),
        "max_cpu_increase": increase_text(max_cpu_increase)}
    gates.update({k: v for k, v in gate_flags.items() if v is not None})
    if gates:
        spec["gates"] = gates
    if probation_s is not None:  # over the spec file's [probation] table, if any
        spec["probation"] = {**(spec.get("probation") or {}), "duration_s": probation_s}
    view = client.create_rollout(spec, dry_run=dry_run)
    if dry_run:
        if as_json:
            emit(view, True)
            return
        click.echo("\n".join(render_rollout(view)))
        for w in view["waves"]:
            ids = w.get("device_ids", [])
            more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
            click.echo(f"  wave {w['wave']}: {', '.join(ids[:10])}{more}")
        click.echo("dry run: nothing was stored or sent" + (
            f"; would take devices from rollouts {view['preempts']}" if view.get("preempts")
            else ""))
        return
    if not wait:
        if as_json:
            emit(view, True)
        else:
            click.echo(f"rollout #{view['id']} started: {target_text(view)} to "
                       f"{view['targets']} devices in {view['wave_count']} waves; "
                       f"follow it with `edgewise rollout status {view['id']} --wait`")
        return
    if not as_json:
        click.echo(f"rollout #{view['id']} started")
    sys.exit(follow(client, str(view["id"]), parse_duration(timeout), as_json))


@rollout.command("status", epilog=EXIT_CODES_HELP)
@click.argument("ref", metavar="ID")
@click.option("--wait/--no-wait", default=False, help="Follow live progress until it ends.")
@click.option("--timeout", default="0", show_default=True,
              help="Stop waiting after this long (0: no limit).")
@json_option
@click.pass_context
def rollout_status(ctx: click.Context, ref: str, wait: bool, timeout: str, as_json: bool) -> None:
    """Show a rollout: each wave's progress and the gates of the current wave against their
    thresholds. ID is the number `rollout list` shows (or the rollout's name).

    Example: edgewise rollout status 7 --wait
    """
    client = client_from(ctx)
    if wait:
        sys.exit(follow(client, ref, parse_duration(timeout), as_json))
    view = client.rollout(ref)
    emit(view, as_json, "\n".join(render_rollout(view)))


@rollout.command("list")
@click.option("--all/--live", "include_finished", default=True, show_default=True,
              help="Include finished rollouts, or only live ones.")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@json_option
@click.pass_context
def rollout_list(ctx: click.Context, include_finished: bool, limit: int, as_json: bool) -> None:
    """List rollouts, newest first.

    Example: edgewise rollout list --live
    """
    views = client_from(ctx).rollouts(include_finished, limit)
    rows = [[v["id"], v["name"], target_text(v), v["status"],
             f"{v['wave']}/{v['wave_count']}", f"{v['active']}/{v['targets']}",
             v["spec"]["selector"] or "-", time.strftime("%Y-%m-%d %H:%M",
                                                         time.localtime(v["created_at"]))]
            for v in views]
    emit(views, as_json, format_table(["ID", "NAME", "VERSION", "STATUS", "WAVE", "ACTIVE",
                                  "SELECTOR", "CREATED"], rows) if rows else "no rollouts")


def _action(ctx: click.Context, ref: str, action: str, reason: str, as_json: bool) -> None:
    view = client_from(ctx).rollout_action(ref, action, reason)
    emit(view, as_json, "\n".join(render_rollout(view)))


@rollout.command("pause")
@click.argument("ref", metavar="ID")
@click.option("--reason", default="", help="Why, for the audit log.")
@json_option
@click.pass_context
def rollout_pause(ctx: click.Context, ref: str, reason: str, as_json: bool) -> None:
    """Stop sending further waves; devices already moved keep the version.

    Example: edgewise rollout pause 7 --reason "support calls from berlin"
    """
    _action(ctx, ref, "pause", reason, as_json)


@rollout.command("resume")
@click.argument("ref", metavar="ID")
@click.option("--reason", default="", help="Why, for the audit log.")
@json_option
@click.pass_context
def rollout_resume(ctx: click.Context, ref: str, reason: str, as_json: bool) -> None:
    """Continue a paused rollout: the current wave's soak and timeouts start over, and its
    gates are judged again (fix the cause first, or it pauses again).

    Example: edgewise rollout resume 7
    """
    _action(ctx, ref, "resume", reason, as_json)


@rollout.command("abort", epilog=EXIT_CODES_HELP)
@click.argument("ref", metavar="ID")
@click.option("--reason", default="", help="Why, for the audit log.")
@click.option("--wait/--no-wait", default=False, help="Follow the reverts until confirmed.")
@click.option("--timeout", default="0", show_default=True,
              help="Stop waiting after this long (0: no limit).")
@json_option
@click.pass_context
def rollout_abort(ctx: click.Context, ref: str, reason: str, wait: bool, timeout: str,
                  as_json: bool) -> None:
    """Stop a rollout and send every device it moved back to the version it ran before
    (a device that ran no model is told to run none).

    Example: edgewise rollout abort 7 --reason "wrong model" --wait
    """
    client = client_from(ctx)
    view = client.rollout_action(ref, "abort", reason)
    if wait:
        sys.exit(follow(client, str(view["id"]), parse_duration(timeout), as_json))
    emit(view, as_json, "\n".join(render_rollout(view)))


# -- agent rollout ------------------------------------------------------------------------------
# `edgewise agent rollout`: the app adds it to the `agent` group (controller/agent_bundles/cli.py)

@click.command("rollout", epilog=EXIT_CODES_HELP)
@click.argument("version")
@wave_options(
    selector_help="Which devices, by label: 'site=berlin,!canary' (default: every device).",
    waves_help="Cumulative wave sizes, device counts or percentages.",
    soak_help="Time each wave must stay healthy before the next: 10m, or one per wave: "
              "30m,10m,10m.",
    min_reporting_help="Share of a wave that must run VERSION, committed after the launcher's "
                       "probation: 0.9 or 90% (default 0.9).",
    max_failed_help="Failed updates a wave tolerates (the launcher restored the old agent, or "
                    "the bundle was refused): a count (2), a share (0.05) or 5% (default 0).",
    selector_default="", waves_default="1,10%,50%,100%", soak_default="10m")
@steering_options(
    wave_timeout_help="How long a wave may take to report before that counts as a failure: 1h "
                      "(default).",
    on_gate_failure_help="Send every moved device back to the agent version it ran before "
                         "(abort), or stop and wait for a human (pause).",
    priority_help="Overlapping a live agent rollout of lower priority takes its devices over.",
    name_help="A name for the rollout (default 'agent VERSION').",
    on_gate_failure_default="abort", priority_default=0, name_default="")
@launch_options
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
    before (it must be registered too). Follow and steer it with `edgewise rollout status ID`
    (and pause, resume, abort); it runs beside model rollouts (a device has one of each).

    Example: edgewise agent rollout 0.3.0 --selector site=berlin --waves 1,10%,100% --soak 15m --wait
    """
    client = client_from(ctx)
    gates = wave_gates(min_reporting=min_reporting, max_failed=max_failed)
    spec: dict[str, Any] = {
        "kind": "agent", "agent_version": version,
        **plan_fields(selector=selector, waves=waves, soak=soak, wave_timeout=wave_timeout,
                      on_gate_failure=on_gate_failure, priority=priority, name=name),
        "gates": gates}
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


COMMANDS = (rollout,)

