"""What operators did to alerts: acknowledgements and silences, in the controller database.

An acknowledgement belongs to the firing it was given for (the event that fired the alert): when
the alert clears and fires again, the new firing is unacknowledged. A silence is a set of label
matchers (controller/monitoring/notify.py) and a time span; while it lasts, the alerts it matches
are still evaluated, stored and listed (marked silenced), but not notified.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from controller.errors import NotFoundError, ValidationError
from controller.monitoring.notify import (
    Matcher,
    labels_of,
    matcher_from_dict,
    matches_all,
    silence_matchers_for,
)
from controller.storage.db import Database
from controller.storage.tables import (
    alert_acks,
    alert_events,
    alert_silences,
    alert_states,
    device_labels,
    devices,
)

MAX_SILENCE_S = 366 * 86400.0


class AlertMarks:
    def __init__(self, db: Database, group_by: str = "site") -> None:
        self.db = db
        self.group_by = group_by

    def ack(self, event_id: int, by: str, now: float, comment: str = "") -> dict[str, Any]:
        """Acknowledge the firing that event ``event_id`` started."""
        with self.db.write() as conn:
            event = conn.execute(sa.select(alert_events).where(
                alert_events.c.id == event_id)).first()
            if event is None:
                raise NotFoundError("alert event", str(event_id))
            if event.event != "fired":
                raise ValidationError(f"alert event {event_id} is a {event.event!r} event; "
                                      "acknowledge the event that fired the alert (the ID "
                                      "column of `edgewise alerts`)")
            key = {"kind": event.kind, "device_id": event.device_id}
            values = {"event_id": event_id, "acked_at": now, "acked_by": by, "comment": comment}
            exists = conn.execute(sa.select(alert_acks.c.kind).where(
                alert_acks.c.kind == event.kind,
                alert_acks.c.device_id == event.device_id)).first()
            if exists:
                conn.execute(alert_acks.update().where(
                    alert_acks.c.kind == event.kind,
                    alert_acks.c.device_id == event.device_id).values(**values))
            else:
                conn.execute(alert_acks.insert().values(**key, **values))
        return {**key, **values}

    def silence(self, matchers: list[Matcher], *, starts_at: float, duration_s: float, by: str,
                comment: str = "") -> dict[str, Any]:
        if not matchers:
            raise ValidationError("a silence needs at least one matcher (or an alert's ID)")
        if not 0 < duration_s <= MAX_SILENCE_S:
            raise ValidationError(f"a silence lasts more than 0 s and at most "
                                  f"{MAX_SILENCE_S / 86400:.0f} days")
        row = {"matchers_json": json.dumps([m.to_dict() for m in matchers]),
               "starts_at": starts_at, "ends_at": starts_at + duration_s,
               "created_by": by, "comment": comment}
        with self.db.write() as conn:
            key = conn.execute(alert_silences.insert().values(**row)).inserted_primary_key
            assert key is not None
            sid = key[0]
        return _silence_dict({"id": int(sid), **row})

    def matchers_for_event(self, event_id: int) -> list[Matcher]:
        """The matchers that silence the alert event ``event_id`` belongs to."""
        with self.db.read() as conn:
            event = conn.execute(sa.select(alert_events).where(
                alert_events.c.id == event_id)).first()
        if event is None:
            raise NotFoundError("alert event", str(event_id))
        return silence_matchers_for({"kind": event.kind, "device_id": event.device_id})

    def expire(self, silence_id: int, now: float) -> dict[str, Any]:
        with self.db.write() as conn:
            row = conn.execute(sa.select(alert_silences).where(
                alert_silences.c.id == silence_id)).first()
            if row is None:
                raise NotFoundError("silence", str(silence_id))
            ends = min(float(row.ends_at), now)
            conn.execute(alert_silences.update().where(alert_silences.c.id == silence_id)
                         .values(ends_at=ends))
        return _silence_dict({**dict(row._mapping), "ends_at": ends})

    def silences(self, now: float, include_expired: bool = False) -> list[dict[str, Any]]:
        q = sa.select(alert_silences).order_by(alert_silences.c.id)
        if not include_expired:
            q = q.where(alert_silences.c.ends_at > now)
        with self.db.read() as conn:
            return [_silence_dict(dict(r._mapping)) for r in conn.execute(q)]

    def device_groups(self) -> dict[str, str]:
        """Each device's group (``site=berlin``) by the grouping label, as its alerts carry."""
        label = self.group_by
        if not label:
            return {}
        out: dict[str, str] = {}
        with self.db.read() as conn:
            for r in conn.execute(sa.select(devices.c.device_id, devices.c.labels_json)):
                try:
                    own = json.loads(r.labels_json or "{}")
                except ValueError:
                    own = {}
                if isinstance(own, dict) and label in own:
                    out[r.device_id] = f"{label}={own[label]}"
            for r in conn.execute(sa.select(device_labels.c.device_id, device_labels.c.value)
                                  .where(device_labels.c.key == label)):
                out[r.device_id] = f"{label}={r.value}"
        return out

    def annotate(self, alerts: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        """``alerts`` (rows of AlertStore.alerts) with ``acked_by``/``acked_at`` (when the
        current firing is acknowledged), ``silenced_by`` (silence ids) and ``group``."""
        if not alerts:
            return alerts
        return self.annotate_with(alerts, self.device_groups(), self.silences(now))

    def annotate_with(self, alerts: list[dict[str, Any]], groups: Mapping[str, str],
                      silences: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            acks = {(r.kind, r.device_id): r for r in conn.execute(sa.select(alert_acks))}
        active = [(s["id"], [matcher_from_dict(m) for m in s["matchers"]]) for s in silences]
        out = []
        for a in alerts:
            ack = acks.get((a["kind"], a["device_id"]))
            current = ack if ack is not None and a.get("firing") \
                and a.get("event_id") == ack.event_id else None
            labels = labels_of(a, groups.get(a["device_id"]))
            out.append({**a, "group": labels["group"],
                        "acked_by": current.acked_by if current is not None else None,
                        "acked_at": current.acked_at if current is not None else None,
                        "silenced_by": [sid for sid, ms in active if matches_all(ms, labels)]})
        return out

    def firing_states(self) -> list[dict[str, Any]]:
        """Every alert state (firing or not) with the event that last fired it."""
        e = alert_events.c
        same = (e.kind == alert_states.c.kind, e.device_id == alert_states.c.device_id,
                e.event == "fired")
        fired = sa.select(sa.func.max(e.id)).where(*same).scalar_subquery().label("event_id")
        fired_at = sa.select(sa.func.max(e.ts)).where(*same).scalar_subquery().label("fired_at")
        with self.db.read() as conn:
            rows = conn.execute(sa.select(alert_states, fired, fired_at)).all()
        return [{**dict(r._mapping), "firing": bool(r.firing)} for r in rows]


def _silence_dict(r: Mapping[str, Any]) -> dict[str, Any]:
    d = {k: v for k, v in r.items() if k != "matchers_json"}
    d["matchers"] = json.loads(r["matchers_json"])
    d["text"] = ", ".join(str(matcher_from_dict(m)) for m in d["matchers"])
    return d
