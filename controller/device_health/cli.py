"""`edgewise device health ID` and `edgewise device logs ID`, registered under the `device`
group of the fleet commands. Each is one REST call (``controller/device_health/api.py``) plus
rendering (:mod:`controller.device_health.render`)."""

from __future__ import annotations

import json
import time

import click

from controller.cli.common import client_from, emit, parse_duration
from controller.cli.render import is_tty
from controller.device_health.render import format_health, format_logs


@click.command("health")
@click.argument("device_id")
@click.option("--window", default="6h", show_default=True,
              help="How far back the windows go: 30m, 6h, 2d.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def device_health(ctx: click.Context, device_id: str, window: str, as_json: bool) -> None:
    """Show one device's health: memory, CPU, temperature, disk, link and outbox over its
    recent windows, its firing health alerts with their explanation, and what each model
    version cost on it (session memory, CPU time per prediction, peak RSS).

    Example: edgewise device health pi-berlin-01 --window 2d --json
    """
    seconds = parse_duration(window, "--window")
    if not 60 <= seconds <= 30 * 86400:
        raise click.BadParameter("must be within 1m and 30d", param_hint="--window")
    view = client_from(ctx).device_health(device_id, seconds)
    emit(view, as_json, lambda v: format_health(v, is_tty()))


@click.command("logs")
@click.argument("device_id")
@click.option("--since", default="10m", show_default=True,
              help="Lines logged in the last 30s, 10m, 2h.")
@click.option("--lines", "max_lines", type=click.IntRange(1, 1000), default=200,
              show_default=True, help="At most this many (the newest).")
@click.option("--follow", is_flag=True, help="Ask again every --interval seconds and print "
              "new lines until Ctrl-C.")
@click.option("-n", "--interval", type=click.FloatRange(0.5, 3600), default=2.0,
              show_default=True, help="Seconds between requests with --follow.")
@click.option("--timeout", type=click.FloatRange(0.5, 60), default=5.0, show_default=True,
              help="Seconds the device has to answer.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON for scripts (with --follow: one document per line).")
@click.pass_context
def device_logs(ctx: click.Context, device_id: str, since: str, max_lines: int, follow: bool,
                interval: float, timeout: float, as_json: bool) -> None:
    """Fetch the device's recent log lines over MQTT (warnings and errors by default: the
    agent's log_ring_level). The device must be online; an agent from before logs on demand
    does not answer.

    Example: edgewise device logs pi-berlin-01 --since 1h --follow
    """
    span = parse_duration(since, "--since")
    client = client_from(ctx, timeout=timeout + 10)
    last_ts = None
    try:
        while True:
            reply = client.device_logs(device_id, span, max_lines, timeout)
            if last_ts is not None:
                reply["lines"] = [line for line in reply["lines"] if line["ts"] > last_ts]
            if reply["lines"]:
                last_ts = reply["lines"][-1]["ts"]
            if as_json:
                click.echo(json.dumps(reply, separators=(",", ":")) if follow
                           else json.dumps(reply, indent=2))
            elif reply["lines"] or not follow:
                click.echo(format_logs(reply, is_tty()))
            if not follow:
                return
            time.sleep(interval)
            span = interval + timeout + 5.0
    except KeyboardInterrupt:
        click.echo()
