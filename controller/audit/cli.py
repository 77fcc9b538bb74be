"""`edgewise audit`: the audit log, newest first (``GET /audit``, ``controller/audit/api.py``)."""

from __future__ import annotations

import time

import click

from controller.cli.common import client_from, emit, format_table, json_option


@click.command("audit")
@click.option("--rollout", "rollout_id", type=int, help="Only this rollout's entries.")
@click.option("--device", help="Only entries naming this device.")
@click.option("--action", help="Only actions starting with this, e.g. rollout.aborted or device.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--before", type=int, help="Page: entries older than this id (the 'next' value).")
@json_option
@click.pass_context
def audit(ctx: click.Context, rollout_id: int | None, device: str | None, action: str | None,
          limit: int, before: int | None, as_json: bool) -> None:
    """Show the audit log, newest first: every rollout decision and operator action.

    Example: edgewise audit --rollout 7 --limit 20
    """
    page = client_from(ctx).audit(rollout=rollout_id, device=device, action=action, limit=limit,
                              before=before)
    rows = []
    for e in page["entries"]:
        devices_text = ",".join(e["devices"][:3]) + (
            f" +{len(e['devices']) - 3}" if len(e["devices"]) > 3 else "")
        detail = e["detail"].get("why") or e["detail"].get("detail") or e["detail"].get("reason") \
            or ""
        rows.append([e["id"], time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"])),
                     e["actor"], e["action"], e["rollout_id"] or "-", devices_text or "-",
                     str(detail)[:80]])
    more = f"\nolder entries: `edgewise audit --before {page['next']}`" if page["next"] else ""
    emit(page, as_json, (format_table(["ID", "TIME", "ACTOR", "ACTION", "ROLLOUT", "DEVICES",
                                  "DETAIL"], rows) if rows else "no entries") + more)



COMMANDS = (audit,)
