"""`edgewise experiment start|status|list|stop|promote`: shadow runs and A/B tests from the CLI.

Each command is one REST call (``controller/experiments/api.py``) plus rendering; ``status
--watch`` redraws every few seconds until the test has a verdict (or Ctrl-C).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from controller.cli.common import client_from, emit, fail, format_table, json_option
from controller.cli.exit_codes import ExitCode
from controller.experiments.spec import ArmRef, ExperimentError, parse_share


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} ms"


def _bytes(x: int | None) -> str:
    return "-" if x is None else f"{x / 1e6:.1f} MB"


def render_experiment(view: dict[str, Any]) -> str:
    """The status of one experiment as text: per arm, the test, the shadow agreement."""
    lines = [f"experiment {view['id']}: {view['mode']} {view['model']}:{view['candidate']} "
             f"(candidate) vs {view['model']}:{view['control']} (control), {view['status']}"]
    rows = []
    for arm in ("control", "candidate"):
        a = view["arms"][arm]
        interval = (f"[{_pct(a['accuracy_low'])}, {_pct(a['accuracy_high'])}]"
                    if a["accuracy_low"] is not None else "-")
        rows.append([arm, a["devices"], a["rows"], a["labelled"], _pct(a["accuracy"]), interval,
                     _ms(a["latency_p95_ms"]), _bytes(a["memory_bytes"]), a["errors"]])
    lines.append(format_table(["ARM", "DEVICES", "ROWS", "LABELLED", "ACCURACY", "ALWAYS-VALID CI",
                               "P95 LATENCY", "MEMORY", "ERRORS"], rows))
    c = view["comparison"]
    if c["effect"] is None:
        lines.append(f"verdict: {c['verdict']} (no labelled rows yet; the design predicts "
                     f"{c['predicted_rows']} per arm)")
    else:
        lines.append(
            f"verdict: {c['verdict']}: accuracy difference {100 * c['effect']:+.2f} points, "
            f"always-valid CI [{100 * c['low']:+.2f}, {100 * c['high']:+.2f}] "
            f"({'paired, ' if c['paired'] else ''}{c['rows']} rows of "
            f"{c['predicted_rows']} predicted)")
    lat = view["latency"]
    if lat["effect_ms"] is not None:
        lines.append(f"latency: {lat['verdict']} ({lat['effect_ms']:+.3f} ms per row, CI "
                     f"[{lat['low_ms']:+.3f}, {lat['high_ms']:+.3f}])")
    shadow = view.get("shadow")
    if shadow:
        lines.append(f"shadow: {shadow['compared']} rows compared, agreement "
                     f"{_pct(shadow['agreement'])}, skipped {shadow['skipped']}, failed "
                     f"{shadow['failed']}, slow {shadow['slow']}")
        for control, candidate, n in shadow["disagreements"][:5]:
            lines.append(f"  control {control} -> candidate {candidate}: {n}")
    for device, reason in sorted(view["refused"].items()):
        lines.append(f"refused on {device}: {reason}")
    if view.get("rollout_id"):
        lines.append(f"promoted: rollout #{view['rollout_id']}")
    return "\n".join(lines)


@click.group("experiment")
def experiment() -> None:
    """Shadow runs and A/B tests of a candidate against the served version, on the devices,
    judged by an always-valid sequential test (docs/experiments.md)."""


@experiment.command("start")
@click.option("--shadow", "shadow", metavar="MODEL:VERSION",
              help="Run this candidate in the shadow of the served version.")
@click.option("--ab", "ab", metavar="MODEL:VERSION",
              help="Serve this candidate to a share of the traffic.")
@click.option("--against", "against", required=True, metavar="MODEL:VERSION",
              help="The control: the version the devices serve.")
@click.option("--selector", default="", help="Which devices, by label: 'site=berlin'.")
@click.option("--sample", default="100%", show_default=True,
              help="Shadow: the share of calls the candidate answers (0.2 or 20%).")
@click.option("--share", default=None,
              help="A/B: the candidate's share of devices or requests (10%).")
@click.option("--split", type=click.Choice(["device", "request"]), default="device",
              show_default=True, help="A/B: split devices, or requests by the application's "
              "request key.")
@click.option("--mde", type=float, default=0.05, show_default=True,
              help="The smallest accuracy difference worth finding (0.05: five points).")
@click.option("--alpha", type=float, default=0.05, show_default=True,
              help="False-winner rate, whenever and however often you look.")
@click.option("--beta", type=float, default=0.2, show_default=True,
              help="Miss rate at an effect of --mde within the predicted rows.")
@click.option("--baseline", type=float, default=0.8, show_default=True,
              help="The control's expected accuracy (for the predicted rows).")
@click.option("--name", default="", help="A name (default: mode, candidate, control).")
@json_option
@click.pass_context
def experiment_start(ctx: click.Context, shadow: str | None, ab: str | None, against: str,
                     selector: str, sample: str, share: str | None, split: str, mde: float,
                     alpha: float, beta: float, baseline: float, name: str,
                     as_json: bool) -> None:
    """Start a shadow run or an A/B test. Refused before anything is sent, with the reason,
    when the arms are the same version, take other inputs, a device is in a live rollout, or
    a share lies outside 0-100%.

    \b
    Examples:
      edgewise experiment start --shadow iris:2 --against iris:1 --selector site=berlin --sample 0.2
      edgewise experiment start --ab iris:2 --against iris:1 --share 10%
    """
    if (shadow is None) == (ab is None):
        fail("give exactly one of --shadow MODEL:VERSION or --ab MODEL:VERSION", ExitCode.USAGE)
    try:
        candidate = ArmRef.parse(shadow or ab or "", "candidate")
        ArmRef.parse(against, "--against")
        body: dict[str, Any] = {
            "mode": "shadow" if shadow else "ab", "candidate": str(candidate),
            "control": against, "selector": selector, "sample": parse_share(sample, "--sample"),
            "split": split, "name": name,
            "design": {"mde": mde, "alpha": alpha, "beta": beta, "baseline_accuracy": baseline}}
        if ab:
            if share is None:
                fail("an A/B test needs --share (the candidate's share, 10%)", ExitCode.USAGE)
            body["share"] = parse_share(share, "--share")
    except ExperimentError as exc:
        fail(exc, ExitCode.USAGE)
    view = client_from(ctx).start_experiment(body)
    emit(view, as_json, f"experiment {view['id']} started on "
                        f"{sum(len(v) for v in view['devices'].values())} devices; the design "
                        f"predicts {view['comparison']['predicted_rows']} labelled rows per arm; "
                        f"follow it with `edgewise experiment status {view['id']} --watch`")


@experiment.command("status")
@click.argument("experiment_id", metavar="ID")
@click.option("--watch", is_flag=True, help="Redraw until the test has a verdict.")
@click.option("--interval", type=float, default=5.0, show_default=True,
              help="Seconds between redraws with --watch.")
@json_option
@click.pass_context
def experiment_status(ctx: click.Context, experiment_id: str, watch: bool, interval: float,
                      as_json: bool) -> None:
    """Show an experiment: per arm n, accuracy with its always-valid interval, latency p95,
    memory; the test's verdict, effect and interval.

    Example: edgewise experiment status exp-1a2b3c4d --watch
    """
    client = client_from(ctx)
    while True:
        view = client.experiment(experiment_id)
        if not watch or view["verdict"] != "running" or view["status"] != "running":
            emit(view, as_json, render_experiment(view))
            return
        if as_json:
            emit(view, True)
        else:
            click.clear()
            click.echo(render_experiment(view))
        sys.stdout.flush()
        time.sleep(max(interval, 0.5))


@experiment.command("list")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@json_option
@click.pass_context
def experiment_list(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List experiments, newest first.

    Example: edgewise experiment list
    """
    views = client_from(ctx).experiments(limit)
    rows = [[v["id"], v["mode"], f"{v['model']}:{v['candidate']}", f"{v['model']}:{v['control']}",
             v["status"], v["verdict"], v["devices"]] for v in views]
    emit(views, as_json, format_table(["ID", "MODE", "CANDIDATE", "CONTROL", "STATUS", "VERDICT",
                                       "DEVICES"], rows) if rows else "no experiments")


@experiment.command("stop")
@click.argument("experiment_id", metavar="ID")
@click.option("--reason", default="", help="Why, for the audit log.")
@json_option
@click.pass_context
def experiment_stop(ctx: click.Context, experiment_id: str, reason: str, as_json: bool) -> None:
    """Stop an experiment: the devices drop the candidate; the served model never changed.

    Example: edgewise experiment stop exp-1a2b3c4d --reason "enough"
    """
    view = client_from(ctx).stop_experiment(experiment_id, reason)
    emit(view, as_json, render_experiment(view))


@experiment.command("promote")
@click.argument("experiment_id", metavar="ID")
@click.option("--waves", default="1,10%,50%,100%", show_default=True,
              help="The rollout's cumulative waves.")
@click.option("--soak", "soak_seconds", type=float, default=600.0, show_default=True,
              help="Seconds each wave must stay healthy before the next.")
@click.option("--force", is_flag=True,
              help="Promote although the test has not declared the candidate better.")
@json_option
@click.pass_context
def experiment_promote(ctx: click.Context, experiment_id: str, waves: str, soak_seconds: float,
                       force: bool, as_json: bool) -> None:
    """Stop the experiment and start a rollout of its candidate to its devices, with waves and
    gates (follow it with `edgewise rollout status ID --wait`).

    Example: edgewise experiment promote exp-1a2b3c4d --waves 1,50%,100%
    """
    view = client_from(ctx).promote_experiment(
        experiment_id, {"waves": waves, "soak_seconds": soak_seconds}, force)
    rollout = view["rollout"]
    emit(view, as_json, f"experiment {view['id']} promoted: rollout #{rollout['id']} of "
                        f"{rollout['model']}:{rollout['version']} started; follow it with "
                        f"`edgewise rollout status {rollout['id']} --wait`")


COMMANDS = (experiment,)
