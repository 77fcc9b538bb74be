"""Device health as text: the health columns of the fleet table, `edgewise device health` and
`edgewise device logs`. Pure formatting of what the REST views return."""

from __future__ import annotations

import time
from typing import Any

from controller.cli.common import format_table
from controller.cli.render import paint, version_text

MIB = 1024 * 1024
HEALTH_HEADER = ["MEM", "CPU", "TEMP", "DISK FREE"]


def mib(value: float | None) -> str:
    return f"{value / MIB:,.1f} MiB" if value is not None else "-"


def health_cells(latest: dict[str, Any] | None) -> list[str]:
    """The fleet table's health columns for a device's newest window ('-': not reported)."""
    if not latest:
        return ["-"] * len(HEALTH_HEADER)
    cpu, temp = latest.get("cpu_percent"), latest.get("temp_c")
    free, total = latest.get("disk_free_bytes"), latest.get("disk_total_bytes")
    disk = "-"
    if free is not None:
        disk = f"{free / total:.0%}" if total else mib(free)
    return [mib(latest.get("rss_bytes")), f"{cpu:.1f}%" if cpu is not None else "-",
            f"{temp:.0f}C" if temp is not None else "-", disk]


def format_health(view: dict[str, Any], colour: bool = False) -> str:
    """`edgewise device health ID`: the newest window, the firing alerts, each version's cost
    and the windows as a table."""
    latest = view["latest"]
    lines = [f"device      {paint(view['device_id'], colour, bold=True)}"]
    if latest is None:
        lines.append("no health windows in this range (an agent from before device health "
                     "sends none)")
        return "\n".join(lines)
    g = latest.get("gauges", {})
    lines += [
        f"window      {_when(latest['window_start'])} .. {_when(latest['window_end'])}, "
        f"{latest['samples']} samples, serving "
        f"{version_text(latest.get('model'), latest.get('version'))}",
        f"agent       RSS {mib(latest.get('rss_bytes'))} (peak {mib(latest.get('rss_max_bytes'))})"
        f", CPU {_num(latest.get('cpu_percent'), '.1f', '%')}",
        f"system      memory available {mib(latest.get('mem_available_bytes'))}, load "
        f"{_num(latest.get('load1'), '.2f')}, uptime {_num(latest.get('uptime_s'), ',.0f', ' s')}",
        f"disk        {mib(latest.get('disk_free_bytes'))} free of "
        f"{mib(latest.get('disk_total_bytes'))}",
        f"temperature {_num(latest.get('temp_c'), '.1f', ' C')}"
        + (f", throttled bits {latest['throttled']:#x}" if latest.get("throttled") else ""),
        f"link        {latest.get('reconnects') or 0} reconnects, broker RTT "
        f"{_num(latest.get('rtt_ms'), '.1f', ' ms')}, outbox backlog "
        f"{_num((g.get('outbox_backlog') or [None, None, None])[2], ',.0f')}",
    ]
    if latest.get("rejected"):
        lines.append(f"left out     {latest['rejected']}")
    lines += ["", paint("HEALTH ALERTS", colour, bold=True)]
    if view["alerts"]:
        lines += [f"{paint(a['kind'], colour, fg='red')}: {a['explanation']}"
                  for a in view["alerts"]]
    else:
        lines.append("none")
    lines += ["", paint("MODEL COST PER VERSION (on this device)", colour, bold=True)]
    if view["versions"]:
        lines.append(format_table(
            ["VERSION", "SESSION MEM", "CPU/PREDICTION", "PEAK RSS", "PREDICTIONS", "WINDOWS"],
            [[version_text(v["model"], v["version"]), mib(v["session_bytes"]),
              _num(v["cpu_ms_per_prediction"], '.3f', ' ms'), mib(v["peak_rss_bytes"]),
              v["predictions"], v["windows"]] for v in view["versions"]]))
    else:
        lines.append("no model served in this range")
    lines += ["", paint("WINDOWS (oldest first)", colour, bold=True), format_table(
        ["END", "RSS", "CPU", "MEM AVAIL", "TEMP", "DISK FREE", "BACKLOG"],
        [[_when(w["window_end"]), mib(w["rss_bytes"]), _num(w["cpu_percent"], '.1f', '%'),
          mib(w["mem_available_bytes"]), _num(w["temp_c"], '.1f'),
          mib(w["disk_free_bytes"]), _num(w["outbox_backlog"], ',.0f')]
         for w in view["windows"][-20:]])]
    return "\n".join(lines)


def format_logs(reply: dict[str, Any], colour: bool = False) -> str:
    lines = [f"{_when(line['ts'])} {paint(line['level'], colour, fg=_LEVEL.get(line['level']))}"
             f" {line['logger']}: {line['message']}" for line in reply["lines"]]
    if not lines:
        lines = ["no log lines in this range"]
    if reply.get("dropped"):
        lines.append(f"({reply['dropped']} older lines pushed out of the device's ring)")
    return "\n".join(lines)


_LEVEL = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "red"}


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _num(value: float | None, fmt: str, unit: str = "") -> str:
    return f"{value:{fmt}}{unit}" if value is not None else "-"
