"""`edgewise alerts`, `edgewise metrics`, `edgewise drift`, `edgewise retrain-runs`: what the
fleet's monitoring sees. Each command is one REST call (``controller/monitoring/api.py``,
``controller/monitoring/drift_api.py``) plus formatting."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from controller.cli.common import (
    DURATION_HELP,
    client_from,
    emit,
    fail,
    format_table,
    json_option,
    parse_duration,
    parse_since,
)
from controller.cli.exit_codes import ExitCode, exit_codes_help
from controller.cli.render import is_tty
from controller.fleet.versions import parse_model_ref
from controller.monitoring.drift_render import render as render_drift
from controller.monitoring.rules import ALERT_KINDS

MAX_WINDOW_S = 30 * 86400  # what the drift endpoint accepts


def _num(value: Any, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ago(ts: Any) -> str:
    return "-" if ts is None else f"{time.time() - float(ts):.0f}s ago"


# -- alerts ------------------------------------------------------------------------------------

@click.group("alerts", invoke_without_command=True,
             epilog=exit_codes_help(ExitCode.OK, ExitCode.ERROR, ExitCode.ALERTS_FIRING))
@click.option("--all", "show_all", is_flag=True, help="Every alert state, cleared ones too.")
@click.option("--history", is_flag=True, help="Fired/cleared events instead of current states.")
@click.option("--kind", type=click.Choice(list(ALERT_KINDS)), help="Only this kind of alert.")
@click.option("--device", "device_id", help="Only this device (or group, e.g. group:site=berlin).")
@click.option("--since", help="With --history: events since 30m, 6h, 2d ago or a Unix time.")
@click.option("--explain", "explain_id", type=click.IntRange(1), metavar="ID",
              help="Explain one alert event (the ID column): the test, its statistic against "
                   "its threshold, its false-alarm rate, the evidence and the settings.")
@click.option("--evaluate", is_flag=True,
              help="Judge the metrics received so far first (needs an admin token).")
@json_option
@click.pass_context
def alerts(ctx: click.Context, show_all: bool, history: bool, kind: str | None,
           device_id: str | None, since: str | None, explain_id: int | None, evaluate: bool,
           as_json: bool) -> None:
    """Show the alerts that are firing: drift, accuracy, bias, concept (the devices' own
    per-label tests), segments less accurate than the rest, latency, devices gone silent.

    Drift, accuracy, bias and concept alerts come from sequential tests that accumulate
    evidence across windows with a stated false-alarm rate (at most 1e-7 per row by default):
    a large change fires in its first window, a small one once the evidence proves it. A
    group's alert (device group:site=berlin) pools the evidence of its devices. Latency fires
    after several slow windows in a row. docs/monitoring.md explains every test. Exit code 0
    when nothing fires, 7 when something does (docs/cli.md).

    Example: edgewise alerts --kind drift --json

    Example: edgewise alerts --explain 17

    Acknowledge a firing with `edgewise alerts ack ID`; stop its notifications (Alertmanager,
    webhooks) for a while with `edgewise alerts silence ID --for 2h` (docs/integrations.md).
    """
    if ctx.invoked_subcommand is not None:
        return
    client = client_from(ctx)
    if explain_id is not None:
        emit(client.explain_alert(explain_id), as_json, format_explanation)
        return
    if evaluate:
        client.evaluate_alerts()
    if history:
        events = client.alert_history(since=parse_since(since), kind=kind, device_id=device_id)
        emit(events, as_json, lambda rows: format_table(
            ["ID", "WHEN", "KIND", "DEVICE", "EVENT", "VERSION", "VALUE", "THRESHOLD", "DETAIL"],
            [[e["id"], _ago(e["ts"]), e["kind"], e["device_id"], e["event"],
              f"{e['model']}:{e['version']}" if e.get("model") else "-",
              _num(e.get("value")), _num(e.get("threshold")), e["detail"]] for e in rows]))
        return
    rows = client.alerts(include_cleared=show_all, kind=kind, device_id=device_id)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(format_table(["ID", "KIND", "DEVICE", "STATE", "SINCE", "VERSION", "VALUE",
                                 "THRESHOLD", "DETAIL"],
                                [[r.get("event_id") or "-", r["kind"], r["device_id"],
                                  _state_text(r),
                                  _ago(r["since"]) if r["firing"] else "-",
                                  f"{r['model']}:{r['version']}" if r.get("model") else "-",
                                  _num(r.get("value")), _num(r.get("threshold")), r["detail"]]
                                 for r in rows]))
        firing = sum(1 for r in rows if r["firing"])
        click.echo(f"{firing} alert{'s' if firing != 1 else ''} firing"
                   + ("; `edgewise alerts --explain ID` says why" if firing else ""))
    sys.exit(ExitCode.ALERTS_FIRING if any(r["firing"] for r in rows) else ExitCode.OK)


def _state_text(r: dict[str, Any]) -> str:
    if not r["firing"]:
        return "ok"
    marks = []
    if r.get("acked_by"):
        marks.append(f"acked by {r['acked_by']}")
    if r.get("silenced_by"):
        marks.append("silenced (" + ", ".join(f"#{s}" for s in r["silenced_by"]) + ")")
    return "FIRING" + (f" [{'; '.join(marks)}]" if marks else "")


@alerts.command("ack", epilog=exit_codes_help(ExitCode.OK, ExitCode.ERROR))
@click.argument("event_id", metavar="ID", type=click.IntRange(1))
@click.option("--comment", default="", help="Why, or who handles it.")
@json_option
@click.pass_context
def alerts_ack(ctx: click.Context, event_id: int, comment: str, as_json: bool) -> None:
    """Acknowledge the alert whose firing event is ID (the ID column of `edgewise alerts`).

    `edgewise alerts` and the dashboard then show who acknowledged it; Alertmanager receives
    it as the annotation acknowledged_by. A later firing of the same alert is a new event and
    needs its own acknowledgement. Needs an admin token.

    Example: edgewise alerts ack 17 --comment "replacing the sensor"
    """
    done = client_from(ctx).ack_alert(event_id, comment)
    emit(done, as_json, lambda d: f"acknowledged {d['kind']} alert on {d['device_id']} "
                                  f"(event {d['event_id']}) as {d['acked_by']}")


def _silence_text(s: dict[str, Any]) -> str:
    left = float(s["ends_at"]) - time.time()
    return (f"silence #{s['id']}: {s['text']} until "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(float(s['ends_at'])))}"
            f" ({'ended' if left <= 0 else f'{left / 3600:.1f} h left'}) by {s['created_by']}")


@alerts.command("silence", epilog=exit_codes_help(ExitCode.OK, ExitCode.ERROR,
                                                   ExitCode.USAGE))
@click.argument("event_id", metavar="[ID]", type=click.IntRange(1), required=False)
@click.option("--matcher", "matchers", multiple=True, metavar="LABEL=VALUE",
              help="Silence every alert whose labels match (repeat to AND them): label=value, "
                   "label!=value, label=~regex, label!~regex on alertname, kind, device, group, "
                   "model, version, severity.")
@click.option("--for", "duration", default="2h", show_default=True,
              help=f"How long: {DURATION_HELP}.")
@click.option("--comment", default="", help="Why.")
@json_option
@click.pass_context
def alerts_silence(ctx: click.Context, event_id: int | None, matchers: tuple[str, ...],
                   duration: str, comment: str, as_json: bool) -> None:
    """Stop notifying an alert (ID: its firing event) or every alert the matchers select.

    Silenced alerts are still judged, stored and listed (marked silenced), but not sent to
    Alertmanager or the webhook until the silence ends. Needs an admin token.

    Example: edgewise alerts silence 17 --for 2h

    Example: edgewise alerts silence --matcher model=iris --matcher group=site=berlin --for 1d
    """
    if (event_id is None) == (not matchers):
        fail("give an alert ID or --matcher, not both and not neither", ExitCode.USAGE)
    done = client_from(ctx).silence_alerts(event_id=event_id, matchers=list(matchers),
                                           duration_s=parse_duration(duration, "--for"),
                                           comment=comment)
    emit(done, as_json, _silence_text)


@alerts.command("silences", epilog=exit_codes_help(ExitCode.OK, ExitCode.ERROR))
@click.option("--all", "show_all", is_flag=True, help="Ended silences too.")
@json_option
@click.pass_context
def alerts_silences(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """List the silences in force.

    Example: edgewise alerts silences --json
    """
    rows = client_from(ctx).silences(include_expired=show_all)
    emit(rows, as_json, lambda rows: "\n".join(_silence_text(s) for s in rows)
         or "no silences")


@alerts.command("unsilence", epilog=exit_codes_help(ExitCode.OK, ExitCode.ERROR))
@click.argument("silence_id", metavar="SILENCE_ID", type=click.IntRange(1))
@json_option
@click.pass_context
def alerts_unsilence(ctx: click.Context, silence_id: int, as_json: bool) -> None:
    """End a silence now (its number in `edgewise alerts silences`). Needs an admin token.

    Example: edgewise alerts unsilence 3
    """
    emit(client_from(ctx).expire_silence(silence_id), as_json, _silence_text)


def format_explanation(doc: dict[str, Any]) -> str:
    """An explained alert event as text: what fired, the test, the evidence, the settings."""
    e = doc["event"]
    ctx = e.get("context") or {}
    decision = ctx.get("decision") or {}
    explanation = decision.get("explanation") or {}
    version = f"{e['model']}:{e['version']}" if e.get("model") else "-"
    lines = [f"event {e['id']}: {e['kind']} {e['event']} on {e['device_id']} ({version}) "
             f"{_ago(e['ts'])}", f"  {e['detail']}"]
    if explanation:
        lines.append("test")
        for key in ("test", "false_alarm_rate", "alpha", "level", "reference_n", "reference_error",
                    "null_error", "label", "period"):
            if key in explanation:
                lines.append(f"  {key.replace('_', ' '):<18}{explanation[key]}")
        if decision.get("score") is not None:
            lines.append(f"  {'evidence':<18}{decision['score']:.3g} against the threshold "
                         f"{decision['threshold']:.3g} (natural logs)")
        leader = explanation.get("leader")
        if isinstance(leader, dict):
            lines.append("  leading component  " + ", ".join(f"{k} {v}" for k, v in leader.items()))
    elif e["kind"] in ("latency", "silent"):
        lines.append(f"  window rule: value {_num(e.get('value'))} against threshold "
                     f"{_num(e.get('threshold'))}")
    if ctx.get("devices"):
        lines.append(f"group of {len(ctx['devices'])} devices: {', '.join(ctx['devices'][:10])}"
                     + (" ..." if len(ctx["devices"]) > 10 else ""))
    state = doc.get("state")
    if state:
        lines.append(f"now: {'FIRING' if state['firing'] else 'cleared'} ({state['detail']})")
    detectors = doc.get("detectors") or {}
    if detectors.get("not_watched"):
        lines.append("not watched: " + "; ".join(detectors["not_watched"].values()))
    settings = doc.get("settings") or {}
    if settings:
        lines.append("settings: " + json.dumps(settings.get("detectors", {}), sort_keys=True))
    return "\n".join(lines)


# -- metrics -----------------------------------------------------------------------------------

@click.command("metrics")
@click.argument("target", metavar="[NAME:VERSION]", required=False)
@click.option("--device", "device_id", help="One device's figures per model version.")
@click.option("--group", "label", help="With NAME:VERSION: one row per value of this label.")
@click.option("--selector", help="With NAME:VERSION: only devices matching, e.g. site=berlin.")
@click.option("--since", default="1h", show_default=True,
              help="Windows since 30m, 6h, 2d ago or a Unix time.")
@json_option
@click.pass_context
def metrics(ctx: click.Context, target: str | None, device_id: str | None, label: str | None,
            selector: str | None, since: str, as_json: bool) -> None:
    """Accuracy, latency, drift and volume, added up from the devices' metrics windows.

    Without arguments: every model version fleet-wide. NAME:VERSION: that version fleet-wide,
    per label value with --group, or over a --selector.

    Example: edgewise metrics iris:2 --group site --since 6h
    """
    client = client_from(ctx)
    start = parse_since(since)
    if device_id is not None:
        rows = client.device_metrics(device_id, since=start)
    elif target is None:
        rows = client.fleet_metrics(since=start)
    else:
        name, _, version_text = target.partition(":")
        if not version_text.isdigit():
            raise click.BadParameter(f"{target!r} must be NAME:VERSION, e.g. iris:2",
                                     param_hint="TARGET")
        if label is not None:
            groups = client.group_metrics(name, int(version_text), label, since=start)
            rows = [{**agg, "group": f"{label}={value or '(none)'}"}
                    for value, agg in groups.items()]
        else:
            rows = [client.version_metrics(name, int(version_text), since=start,
                                           selector=selector)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = []
    for r in rows:
        f = r.get("figures") or {}
        latency = f.get("latency_ms") or {}
        scope = r.get("group") or r.get("device_id") or r.get("selector") or "fleet"
        table.append([f"{r['model']}:{r['version']}", scope, r.get("devices_reporting", 0),
                      f.get("predictions", 0), _pct(f.get("error_rate")),
                      _pct(f.get("accuracy")) if f.get("mae") is None else _num(f["mae"]),
                      f.get("labelled", 0), _estimate(f), _loss_or_bias(f),
                      _num(latency.get("p95")), _num(f.get("drift_psi")),
                      ",".join(f.get("drifted_features") or []) or "-"])
    click.echo(format_table(["VERSION", "SCOPE", "DEVICES", "PREDICTIONS", "ERRORS", "ACCURACY/MAE",
                             "LABELS", "EST.ACC (95% CI)", "LOG LOSS/BIAS", "P95 MS", "MAX PSI",
                             "DRIFTED"], table))
    if any((r.get("figures") or {}).get("estimated_accuracy") is not None for r in rows):
        click.echo("EST.ACC: expected accuracy from calibrated probabilities, without labels; "
                   "it cannot see concept drift (a change of what the labels mean leaves the "
                   "model as confident as before): trust ACCURACY where labels arrive.")


def _estimate(f: dict[str, Any]) -> str:
    value, ci = f.get("estimated_accuracy"), f.get("estimated_accuracy_ci")
    if value is None:
        return "-"
    return f"{value:.1%}" + (f" ({ci[0]:.1%}-{ci[1]:.1%})" if ci else "")


def _loss_or_bias(f: dict[str, Any]) -> str:
    """A classifier's log loss on its labels; a regressor's mean error (prediction - label)."""
    if f.get("mae") is not None:
        return _num(f.get("bias"))
    return _num(f.get("log_loss"))


# -- drift per feature ------------------------------------------------------------------------

@click.command("drift")
@click.argument("target", metavar="MODEL[:VERSION]")
@click.option("--by", type=click.Choice(["feature", "device", "group"]), default="feature",
              show_default=True, help="Each feature over time, or each device or label group "
                                      "over the whole range.")
@click.option("--group-by", "group_by", default="site", show_default=True,
              help="With --by group: the device label whose values form the groups.")
@click.option("--since", default="1h", show_default=True,
              help="The range: windows since 30m, 6h, 2d ago or a Unix time.")
@click.option("--buckets", type=click.IntRange(2, 500), default=24, show_default=True,
              help="About how many time buckets (the sparkline's width).")
@click.option("--top", type=click.IntRange(1, 1000),
              help="Only the most drifted features (or devices, groups).")
@json_option
@click.pass_context
def drift(ctx: click.Context, target: str, by: str, group_by: str, since: str, buckets: int,
          top: int | None, as_json: bool) -> None:
    """Which feature drifted: PSI per feature of a model version (default: the latest) across
    the fleet over time, the devices' histograms added up per time bucket and compared with
    the version's reference profile; or per device or label group over the range.

    Markers below the table say when the version started or stopped running on devices,
    when rollouts and deployments began and ended, and when alerts fired and cleared. A
    figure needs 10 rows per reference bin: "-" and "·" mean too few rows, not "no drift".

    \b
    Example:
      edgewise drift iris:2 --since 6h
      edgewise drift iris --by group --group-by site --json
    """
    try:
        name, version = parse_model_ref(target)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="MODEL[:VERSION]") from None
    now = time.time()
    start = parse_since(since)
    window = now - (start if start is not None else now)
    if not 60 <= window <= MAX_WINDOW_S:
        raise click.BadParameter("the range must be between 1 minute and 30 days back",
                                 param_hint="--since")
    view = client_from(ctx).drift(
        name, version, window=round(window), buckets=buckets, by=by,
        group_by=group_by if by == "group" else None,
        top=top if by == "feature" else None, limit=top if by != "feature" else None)
    emit(view, as_json, lambda v: render_drift(v, now, colour=is_tty()))


# -- retraining runs ---------------------------------------------------------------------------

@click.command("retrain-runs")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
@click.pass_context
def retrain_runs(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Runs of the continuous-training hook: which alert started them and what came of it.

    Example: edgewise retrain-runs --limit 5
    """
    rows = client_from(ctx).retrain_runs(limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(format_table(["RUN", "STARTED", "KIND", "VERSION", "ACTION", "STATUS", "NEW", "DETAIL"],
                      [[r["id"], _ago(r["started_at"]), r["kind"], f"{r['model']}:{r['version']}",
                        r["action"], r["status"],
                        r["new_version"] if r.get("new_version") is not None else "-",
                        (r["detail"] or "")[:100]] for r in rows]))


COMMANDS = (alerts, metrics, drift, retrain_runs)
