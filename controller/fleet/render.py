"""The fleet views as text: the fleet table and one device's page (`edgewise fleet`,
`edgewise device show`, the demo's closing table). Pure formatting of what the REST views return."""

from __future__ import annotations

import time
from typing import Any

from controller.cli.common import format_table
from controller.cli.render import STATE_COLOURS, ago, paint, pct, span, version_text
from controller.device_health.render import HEALTH_HEADER, health_cells, mib


def format_fleet_table(rows: list[dict[str, Any]], colour: bool = False,
                       now: float | None = None) -> str:
    """The fleet table: one row per device, then ``N devices, M online``."""
    now = time.time() if now is None else now
    table = []
    # health columns once any device reports health (agents from before it send none)
    show_health = any(d.get("health") for d in rows)
    for d in rows:
        presence = "online" if d.get("online") else (
            "offline" if d.get("seen", True) else "never seen")
        table.append([d["device_id"], presence, version_text(d.get("active_model"),
                                                         d.get("active_version")),
                      d.get("state") or "-", ago(d.get("last_seen"), now),
                      d.get("predictions", 0), pct(d.get("accuracy"))]
                     + (health_cells(d.get("health")) if show_health else []))
    online = sum(1 for d in rows if d.get("online"))

    def paint_cell(column: int, cell: str) -> str:
        text = cell.strip()
        if column == 1:
            return paint(cell, colour, fg="green" if text == "online" else "red")
        if column == 3 and STATE_COLOURS.get(text):
            return paint(cell, colour, fg=STATE_COLOURS[text])
        return cell

    body = format_table(["DEVICE", "ONLINE", "MODEL", "STATE", "LAST SEEN", "PREDICTIONS",
                         "ACCURACY"] + (HEALTH_HEADER if show_health else []), table,
                        paint_cell if colour else None)
    return body + f"\n{len(rows)} devices, {online} online"


def recent_figures(series: dict[str, Any]) -> dict[str, Any]:
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
        f"device      {paint(d['device_id'], colour, bold=True)}  "
        f"{paint(presence, colour, fg='green' if d.get('online') else 'red')} "
        f"(last seen {ago(d.get('last_seen'), now)})",
        f"labels      {labels}",
        f"runs        {version_text(d.get('active_model'), d.get('active_version'))}  state "
        f"{paint(state, colour, fg=STATE_COLOURS.get(state))}  agent "
        f"{d.get('agent_version') or '-'}  class {d.get('device_class') or '-'}",
        f"desired     {version_text(d.get('desired_model'), d.get('desired_version'))}"
        + (f"  ({d['desired_deployment_id']})" if d.get("desired_deployment_id") else ""),
    ]
    # the agent's slots, shown only when it reports them (older agents do not)
    if d.get("staged_model"):
        lines.append(f"staged      {version_text(d['staged_model'], d.get('staged_version'))}"
                     "  (verified, waiting to activate)")
    if d.get("previous_model"):
        lines.append(f"previous    {version_text(d['previous_model'], d.get('previous_version'))}"
                     "  (previous slot: instant rollback)")
    lines += [
        f"all time    {d.get('predictions', 0)} predictions, accuracy {pct(d.get('accuracy'))}"
        f" on {d.get('feedback', 0)} labels, {d.get('dropped_total', 0)} records dropped",
    ]
    latency = recent["mean_latency_ms"]
    drift = recent["drift_psi"]
    drift_text = (f"{drift:.3f}" if drift is not None else
                  "-" if recent["drift_available"] else "not reported yet")
    lines.append(
        f"{'last ' + span(window):<12}{recent['predictions']} predictions, {recent['errors']} errors, "
        f"accuracy {pct(recent['accuracy'])}, latency "
        + (f"{latency:.2f} ms mean" if latency is not None else "-")
        + (f", p95 {recent['p95_latency_ms']:.2f} ms" if recent["p95_latency_ms"] is not None
           else "")
        + f", drift PSI {drift_text}")
    health = view.get("health")
    if health:
        cpu, temp = health.get("cpu_percent"), health.get("temp_c")
        lines.append(
            f"health      RSS {mib(health.get('rss_bytes'))}, CPU "
            + (f"{cpu:.1f}%" if cpu is not None else "-") + ", temperature "
            + (f"{temp:.1f} C" if temp is not None else "-")
            + f", disk free {mib(health.get('disk_free_bytes'))}"
            + f" (`edgewise device health {d['device_id']}`)")
    if d.get("last_error"):
        lines.append(f"last error  {paint(d['last_error'], colour, fg='red')}")
    lines += ["", paint("VERSION HISTORY (newest first)", colour, bold=True)]
    if view["history"]:
        lines.append(format_table(
            ["WHEN", "STATE", "RUNS", "TARGET", "DEPLOYMENT", "ERROR"],
            [[time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["ts"])), h["state"] or "-",
              version_text(h["model"], h["version"]), version_text(h["target_model"], h["target_version"]),
              h["deployment_id"] or "-", (h["error"] or "-")[:60]] for h in view["history"]]))
    else:
        lines.append("no state changes recorded yet")
    lines += ["", paint("LAST ERRORS", colour, bold=True)]
    if view["errors"]:
        lines.append(format_table(
            ["WHEN", "SOURCE", "MODEL", "MESSAGE"],
            [[time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"])), e["source"],
              version_text(e["model"], e["version"]), (e["message"] or "-")[:80]]
             for e in view["errors"]]))
    else:
        lines.append("none")
    return "\n".join(lines)

