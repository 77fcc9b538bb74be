"""`edgewise fleet`, `edgewise device show` and `edgewise models show`: the fleet at a glance.

Each view is a few REST calls (``controller/web/api_views.py``, ``controller/api_rollouts.py``)
plus rendering; ``--json`` prints what the calls returned for scripts. Colour only on a
terminal. The root group in ``controller/cli.py`` turns client errors into one line and exit 1.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import click

from controller.client import ControllerClient


class ViewsClient(ControllerClient):
    """The REST calls of the views."""

    def devices(self, selector: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/devices", params={"selector": selector} if selector else {})

    def device(self, device_id: str) -> dict[str, Any]:
        return self._call("GET", f"/devices/{device_id}")

    def device_history(self, device_id: str, limit: int) -> list[dict[str, Any]]:
        return self._call("GET", f"/devices/{device_id}/history", params={"limit": limit})

    def device_errors(self, device_id: str, limit: int) -> list[dict[str, Any]]:
        return self._call("GET", f"/devices/{device_id}/errors", params={"limit": limit})

    def device_series(self, device_id: str, window: float, buckets: int) -> dict[str, Any]:
        return self._call("GET", f"/devices/{device_id}/series",
                          params={"window": window, "buckets": buckets})

    def model_summary(self, name: str, window: float, group_by: str) -> dict[str, Any]:
        return self._call("GET", f"/models/{name}/summary",
                          params={"window": window, "group_by": group_by})


def _client(ctx: click.Context) -> ViewsClient:
    from controller.cli_security import resolve_credentials

    obj = ctx.find_root().obj
    token, ca_cert = resolve_credentials(obj["url"], obj["token"])
    return ViewsClient(obj["url"], token, ca_cert=ca_cert)


# -- rendering ---------------------------------------------------------------------------------

# every edgewise_wire.UPDATE_STATES value; in progress yellow (issue 4: probation is
# serving but not committed yet), rolled_back magenta: the old model serves, the update did not
_STATE_COLOURS = {"active": "green", "failed": "red", "downloading": "yellow",
                  "verifying": "yellow", "staged": "yellow", "activating": "yellow",
                  "probation": "yellow", "rolling_back": "yellow", "rolled_back": "magenta",
                  "idle": None}


def _paint(text: str, colour: bool, **style: Any) -> str:
    return click.style(text, **style) if colour else text


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                 paint: Callable[[int, str], str] | None = None) -> str:
    """Columns padded to their widest cell; ``paint(column, padded_cell)`` may colour a cell
    after padding, so escape codes never shift the columns."""
    cells = [list(header)] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, r in enumerate(cells):
        padded = [c.ljust(w) for c, w in zip(r, widths, strict=True)]
        if paint is not None and n > 0:
            padded = [paint(i, c) for i, c in enumerate(padded)]
        elif n == 0 and paint is not None:
            padded = [click.style(c, bold=True) for c in padded]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def _ago(ts: float | None, now: float) -> str:
    if not ts:
        return "never"
    seconds = max(0.0, now - ts)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"


def _version(model: str | None, version: int | None) -> str:
    return f"{model}:{version}" if model else "-"


def _pct(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "-"


def format_fleet_table(rows: list[dict[str, Any]], colour: bool = False,
                       now: float | None = None) -> str:
    """The fleet table: one row per device, then ``N devices, M online``."""
    now = time.time() if now is None else now
    table = []
    for d in rows:
        presence = "online" if d.get("online") else (
            "offline" if d.get("seen", True) else "never seen")
        table.append([d["device_id"], presence, _version(d.get("active_model"),
                                                         d.get("active_version")),
                      d.get("state") or "-", _ago(d.get("last_seen"), now),
                      d.get("predictions", 0), _pct(d.get("accuracy"))])
    online = sum(1 for d in rows if d.get("online"))

    def paint(column: int, cell: str) -> str:
        text = cell.strip()
        if column == 1:
            return _paint(cell, colour, fg="green" if text == "online" else "red")
        if column == 3 and _STATE_COLOURS.get(text):
            return _paint(cell, colour, fg=_STATE_COLOURS[text])
        return cell

    body = format_table(["DEVICE", "ONLINE", "MODEL", "STATE", "LAST SEEN", "PREDICTIONS",
                         "ACCURACY"], table, paint if colour else None)
    return body + f"\n{len(rows)} devices, {online} online"


def _is_tty() -> bool:
    return sys.stdout.isatty()


# -- fleet -------------------------------------------------------------------------------------

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
    client = _client(ctx)
    colour = _is_tty() and not as_json
    refreshes = 0
    try:
        while True:
            rows = client.devices(selector)
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
                    click.echo(_paint(f"every {interval:g}s  {stamp}  {client.base_url}", colour,
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
    from controller.rollouts.selectors import SelectorError, parse_selector

    try:
        parse_selector(text)
    except SelectorError as exc:
        raise click.BadParameter(f"{exc}\n  {text}\n  {' ' * exc.position}^",
                                 param_hint="'--selector'") from None


# -- device show -------------------------------------------------------------------------------

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
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def device_show(ctx: click.Context, device_id: str, history_limit: int, window: float,
                as_json: bool) -> None:
    """Show one device: state and version, recent figures (predictions, accuracy, latency,
    drift), version history and last errors. Labels and registration: `edgewise devices show`.

    Example: edgewise device show demo-0003 --history 20 --json
    """
    client = _client(ctx)
    info = client.device(device_id)
    view = {"device": info,
            "recent": _recent(client.device_series(device_id, window, 12)),
            "history": client.device_history(device_id, history_limit),
            "errors": client.device_errors(device_id, 5)}
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    click.echo(format_device(view, window, _is_tty()))


def _recent(series: dict[str, Any]) -> dict[str, Any]:
    """Totals over a series' points: the device's recent figures in one line."""
    points = series["points"]
    predictions = sum(p["predictions"] for p in points)
    labelled = sum(p["labelled"] for p in points)
    hits = sum(round(p["accuracy"] * p["labelled"]) for p in points if p["accuracy"] is not None)
    latency_n = [(p["mean_latency_ms"], p["predictions"]) for p in points
                 if p["mean_latency_ms"] is not None and p["predictions"]]
    weight = sum(n for _, n in latency_n)
    drift = [p["drift_psi"] for p in points if p["drift_psi"] is not None]
    p95 = [p["p95_latency_ms"] for p in points if p["p95_latency_ms"] is not None]
    return {"start": series["start"], "end": series["end"], "predictions": predictions,
            "errors": sum(p["errors"] for p in points), "labelled": labelled,
            "accuracy": hits / labelled if labelled else None,
            "mean_latency_ms": sum(m * n for m, n in latency_n) / weight if weight else None,
            "p95_latency_ms": max(p95) if p95 else None,
            "drift_psi": max(drift) if drift else None,
            "drift_available": series["drift_available"]}


def format_device(view: dict[str, Any], window: float, colour: bool = False) -> str:
    d, recent = view["device"], view["recent"]
    now = time.time()
    presence = "online" if d.get("online") else "offline"
    state = d.get("state") or "-"
    labels = " ".join(f"{k}={v}" for k, v in sorted((d.get("labels") or {}).items())) or "-"
    lines = [
        f"device      {_paint(d['device_id'], colour, bold=True)}  "
        f"{_paint(presence, colour, fg='green' if d.get('online') else 'red')} "
        f"(last seen {_ago(d.get('last_seen'), now)})",
        f"labels      {labels}",
        f"runs        {_version(d.get('active_model'), d.get('active_version'))}  state "
        f"{_paint(state, colour, fg=_STATE_COLOURS.get(state))}  agent "
        f"{d.get('agent_version') or '-'}",
        f"desired     {_version(d.get('desired_model'), d.get('desired_version'))}"
        + (f"  ({d['desired_deployment_id']})" if d.get("desired_deployment_id") else ""),
    ]
    # issue 4: the agent's slots, shown only when it reports them (older agents do not)
    if d.get("staged_model"):
        lines.append(f"staged      {_version(d['staged_model'], d.get('staged_version'))}"
                     "  (verified, waiting to activate)")
    if d.get("previous_model"):
        lines.append(f"previous    {_version(d['previous_model'], d.get('previous_version'))}"
                     "  (previous slot: instant rollback)")
    lines += [
        f"all time    {d.get('predictions', 0)} predictions, accuracy {_pct(d.get('accuracy'))}"
        f" on {d.get('feedback', 0)} labels, {d.get('dropped_total', 0)} records dropped",
    ]
    latency = recent["mean_latency_ms"]
    drift = recent["drift_psi"]
    drift_text = (f"{drift:.3f}" if drift is not None else
                  "-" if recent["drift_available"] else "not reported yet")
    lines.append(
        f"{'last ' + _span(window):<12}{recent['predictions']} predictions, {recent['errors']} errors, "
        f"accuracy {_pct(recent['accuracy'])}, latency "
        + (f"{latency:.2f} ms mean" if latency is not None else "-")
        + (f", p95 {recent['p95_latency_ms']:.2f} ms" if recent["p95_latency_ms"] is not None
           else "")
        + f", drift PSI {drift_text}")
    if d.get("last_error"):
        lines.append(f"last error  {_paint(d['last_error'], colour, fg='red')}")
    lines += ["", _paint("VERSION HISTORY (newest first)", colour, bold=True)]
    if view["history"]:
        lines.append(format_table(
            ["WHEN", "STATE", "RUNS", "TARGET", "DEPLOYMENT", "ERROR"],
            [[time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["ts"])), h["state"] or "-",
              _version(h["model"], h["version"]), _version(h["target_model"], h["target_version"]),
              h["deployment_id"] or "-", (h["error"] or "-")[:60]] for h in view["history"]]))
    else:
        lines.append("no state changes recorded yet")
    lines += ["", _paint("LAST ERRORS", colour, bold=True)]
    if view["errors"]:
        lines.append(format_table(
            ["WHEN", "SOURCE", "MODEL", "MESSAGE"],
            [[time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"])), e["source"],
              _version(e["model"], e["version"]), (e["message"] or "-")[:80]]
             for e in view["errors"]]))
    else:
        lines.append("none")
    return "\n".join(lines)


def _span(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:.0f}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"


# -- models show -------------------------------------------------------------------------------

@click.command("show")
@click.argument("name")
@click.option("--group-by", default="site", show_default=True,
              help="Device label whose values split the 'where it runs' counts.")
@click.option("--window", type=click.FloatRange(60, 30 * 86400), default=3600.0,
              show_default=True, help="Seconds of recent figures per version.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def models_show(ctx: click.Context, name: str, group_by: str, window: float,
                as_json: bool) -> None:
    """Show a model: its versions with conversion parity, where each runs, how each does.

    Example: edgewise models show iris --group-by site
    """
    summary = _client(ctx).model_summary(name, window, group_by)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(format_model(summary, _is_tty()))


def format_model(s: dict[str, Any], colour: bool = False) -> str:
    lines = [f"model   {_paint(s['name'], colour, bold=True)}  ({s['task']})", ""]
    rows = []
    for v in s["versions"]:
        parity = v.get("parity") or {}
        diff = parity.get("max_abs_diff")
        agree = parity.get("label_agreement")
        f = v["figures"]
        rows.append([
            v["version"], v["format"], f"{v['size'] / 1024:.0f} KiB", v["sha256"][:12],
            time.strftime("%Y-%m-%d %H:%M", time.localtime(v["created_at"])),
            f"{diff:.1e}" if isinstance(diff, (int, float)) else "-",
            _pct(agree) if isinstance(agree, (int, float)) else "-",
            f"{v['running']} ({v['online']} online)", v["installing"], v["failed"],
            f["predictions"], _pct(f["accuracy"]),
            f"{f['drift_psi']:.3f}" if f.get("drift_psi") is not None else "-"])

    def paint(column: int, cell: str) -> str:
        if column == 9 and cell.strip() not in ("0", ""):
            return _paint(cell, colour, fg="red")
        return cell

    lines.append(format_table(
        ["VERSION", "FORMAT", "SIZE", "SHA256", "CREATED", "PARITY |DIFF|", "AGREE",
         "RUNNING", "INSTALLING", "FAILED", f"PREDICTIONS {_span(s['window_s'])}", "ACCURACY",
         "DRIFT"], rows, paint if colour else None))
    placed = [(v["version"], v["groups"]) for v in s["versions"] if v["groups"]]
    if placed:
        lines += ["", _paint(f"WHERE IT RUNS (by {s['group_by']})", colour, bold=True)]
        for version, groups in placed:
            parts = ", ".join(f"{g or '(none)'} {n}" for g, n in groups.items())
            lines.append(f"  v{version}: {parts}")
    return "\n".join(lines)


def register(cli: click.Group) -> None:
    """Add the views to the `edgewise` group: `fleet`, `device show`, `models show`."""
    cli.add_command(fleet)
    cli.add_command(device)
    models = cli.commands.get("models")
    if isinstance(models, click.Group):
        models.add_command(models_show)

