"""Markers on a drift chart: when a model version started or stopped running on devices, when
rollouts and deployments of the model began and ended, and when alerts fired and cleared. Pure.

A fleet makes many such events at once (a wave of fifty devices switches in a minute, an alert
fires on every drifting device), and a chart cannot draw fifty lines on one bucket. Events of
one kind and subject in one time bucket therefore become one marker that counts them and names
a few devices; a view's markers are then bounded by its buckets, not by its fleet.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.timebuckets import BucketPlan

VERSION_STARTED = "version_started"
VERSION_STOPPED = "version_stopped"
ROLLOUT_STARTED = "rollout_started"
ROLLOUT_ENDED = "rollout_ended"
DEPLOYMENT = "deployment"
ALERT_FIRED = "alert_fired"
ALERT_CLEARED = "alert_cleared"
MARKER_KINDS = (VERSION_STARTED, VERSION_STOPPED, ROLLOUT_STARTED, ROLLOUT_ENDED, DEPLOYMENT,
                ALERT_FIRED, ALERT_CLEARED)

ROLLOUT_FINAL = ("completed", "aborted", "failed")  # statuses a rollout ends in
NAMED_DEVICES = 5  # devices a coalesced marker names; the rest are counted
DETAIL_CHARS = 160


@dataclass(frozen=True)
class Event:
    """One thing that happened: ``what`` happened (on ``device_id``, with ``detail``)."""

    ts: float
    kind: str
    what: str
    device_id: str | None = None
    detail: str = ""
    alert_kind: str | None = None


@dataclass(frozen=True)
class HistoryRow:
    """A row of a device's version history: what it ran after a report (model None: none)."""

    ts: float
    model: str | None
    version: int | None


def _ref(model: str | None, version: int | None) -> str:
    return "no model" if model is None else f"{model}:{version}"


def version_changes(history: Mapping[str, Sequence[HistoryRow]], model: str, version: int,
                    since: float, until: float) -> list[Event]:
    """When ``model:version`` became, or stopped being, what a device runs.

    ``history`` holds each device's rows in the order they were recorded, starting with the
    last row before ``since`` when there is one (so that the first change in the range has
    something to compare with). Rows that only change the update state are no change.
    """
    target = (model, version)
    out = []
    for device_id, rows in history.items():
        previous: tuple[str | None, int | None] | None = None
        for row in rows:
            current = (row.model, row.version)
            if previous is not None and current == previous:
                continue
            if since <= row.ts < until:
                if current == target:
                    detail = "first report" if previous is None else f"was {_ref(*previous)}"
                    out.append(Event(row.ts, VERSION_STARTED, f"{_ref(*target)} started",
                                     device_id, detail))
                elif previous == target:
                    out.append(Event(row.ts, VERSION_STOPPED, f"{_ref(*target)} stopped",
                                     device_id, f"now {_ref(*current)}"))
            previous = current
    return out


def rollout_events(rollouts: Iterable[Mapping[str, Any]], since: float,
                   until: float) -> list[Event]:
    """A rollout's start, and its end once it completed, aborted or failed."""
    out = []
    for r in rollouts:
        ref = _ref(r["model"], r["version"])
        name = r.get("name") or f"#{r['id']}"
        if since <= float(r["created_at"]) < until:
            out.append(Event(float(r["created_at"]), ROLLOUT_STARTED,
                             f"rollout {name} of {ref} started"))
        if r["status"] in ROLLOUT_FINAL and since <= float(r["updated_at"]) < until:
            out.append(Event(float(r["updated_at"]), ROLLOUT_ENDED,
                             f"rollout {name} of {ref} {r['status']}"))
    return out


def deployment_events(deployments: Iterable[Mapping[str, Any]], since: float,
                      until: float) -> list[Event]:
    """An all-at-once deployment of a version: when it was ordered."""
    return [Event(float(d["created_at"]), DEPLOYMENT,
                  f"deployment {d['deployment_id']} of {_ref(d['model'], d['version'])}")
            for d in deployments if since <= float(d["created_at"]) < until]


def alert_events(events: Iterable[Mapping[str, Any]], since: float, until: float) -> list[Event]:
    """Alert events (``alert_events`` rows): fired or cleared, per device."""
    out = []
    for e in events:
        kind = ALERT_FIRED if e["event"] == "fired" else ALERT_CLEARED
        if since <= float(e["ts"]) < until:
            out.append(Event(float(e["ts"]), kind, f"{e['kind']} alert {e['event']}",
                             e.get("device_id"), str(e.get("detail") or ""),
                             alert_kind=str(e["kind"])))
    return out


def coalesce(events: Iterable[Event], plan: BucketPlan, limit: int = 500) -> list[dict[str, Any]]:
    """One marker per (time bucket, kind, subject): the earliest time, how many events, a few
    devices by name and a sentence. Oldest first; at most ``limit`` (the newest)."""
    groups: dict[tuple[int, str, str], list[Event]] = defaultdict(list)
    for e in events:
        index = plan.index(e.ts)
        if index is not None:
            groups[(index, e.kind, e.what)].append(e)
    markers = []
    for (_, kind, what), members in groups.items():
        members.sort(key=lambda e: (e.ts, e.device_id or ""))
        devices = sorted({e.device_id for e in members if e.device_id is not None})
        markers.append({"ts": members[0].ts, "kind": kind, "text": _sentence(what, members, devices),
                        "count": len(members), "devices": devices[:NAMED_DEVICES],
                        "alert_kind": members[0].alert_kind})
    markers.sort(key=lambda m: (m["ts"], MARKER_KINDS.index(m["kind"]), m["text"]))
    return markers[-limit:] if limit else []


def _sentence(what: str, members: Sequence[Event], devices: Sequence[str]) -> str:
    if not devices:
        return what if len(members) == 1 else f"{what} ({len(members)}×)"
    if len(members) == 1:
        detail = members[0].detail[:DETAIL_CHARS]
        return f"{what} on {devices[0]}" + (f" ({detail})" if detail else "")
    named = ", ".join(devices[:NAMED_DEVICES])
    more = len(devices) - NAMED_DEVICES
    return (f"{what} on {len(devices)} device{'s' if len(devices) != 1 else ''}: {named}"
            + (f" and {more} more" if more > 0 else ""))
