"""Alert states and alert history in the controller database.

:meth:`AlertStore.evaluate` is one write transaction: it takes the metrics windows not yet
evaluated (oldest first), the devices' last contact and the stored alert states; feeds each
device's windows, and each group's pooled windows, to the sequential detectors of their model
version (:mod:`controller.monitoring.watch_store`); judges latency and silence by the window
rules (:mod:`controller.monitoring.hysteresis`); once per period compares the accuracy of the
groups of a label (:mod:`edgewise_monitoring.quality`); writes back the detector states, the
alert states that changed and the events; and marks the windows evaluated. Several controller
replicas may call it at once: PostgreSQL serialises them on an advisory lock, SQLite on its write
lock, so every window is judged once.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from controller.errors import NotFoundError
from controller.monitoring import (
    AlertEvent,
    AlertKind,
    AlertRules,
    AlertState,
    DeviceSeen,
    StateKey,
    WindowObservation,
    evaluate,
)
from controller.monitoring.metrics_store import MetricsStore
from controller.monitoring.segments import segment_test
from controller.monitoring.sequential_alerts import Judgement, apply_judgements, group_key
from controller.monitoring.watch import WatchSettings
from controller.monitoring.watch_store import (
    Watches,
    WatchKey,
    build_watch,
    load_watches,
    save_watches,
)
from controller.storage.db import Database
from controller.storage.tables import (
    alert_events,
    alert_states,
    device_labels,
    devices,
    metrics,
    watch_states,
)
from edgewise_monitoring.sequential import Decision

# pg_advisory_xact_lock key for alert evaluation: b"EwAlerts" as a big-endian int64.
ALERT_LOCK_KEY = int.from_bytes(b"EwAlerts", "big")
SEGMENT_PERIOD_KEY = "segments:"  # watch_states rows that remember the last period judged


@dataclass(frozen=True)
class DetectionSettings:
    """How the sequential tests are run (docs/monitoring.md): their own settings, the label
    whose groups pool evidence, and the segment comparison."""

    watch: WatchSettings = field(default_factory=WatchSettings)
    group_by: str = "site"
    segment_label: str = "site"
    segment_alpha: float = 0.01
    segment_min_labels: int = 100
    segment_period_s: float = 3600.0


class AlertStore:
    def __init__(self, db: Database, metrics_store: MetricsStore) -> None:
        self.db = db
        self.metrics = metrics_store

    # -- evaluation ----------------------------------------------------------------------------

    def evaluate(self, now: float, rules: AlertRules,
                 detection: DetectionSettings | None = None,
                 max_windows: int = 5000) -> list[AlertEvent]:
        """Judge the windows not evaluated yet and every device's silence; return the events."""
        detection = detection or DetectionSettings()
        m = metrics.c
        with self.db.write() as conn:
            if self.db.dialect_name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ALERT_LOCK_KEY)))
            rows = conn.execute(
                sa.select(m.device_id, m.model, m.version, m.window_start, m.window_end,
                          m.predictions, m.labelled, m.accuracy, m.p95_latency_ms,
                          m.summary_json)
                .where(m.evaluated == sa.false())
                .order_by(m.window_end).limit(max_windows)).all()
            observations = [WindowObservation(
                device_id=r.device_id, model=r.model, version=int(r.version),
                window_start=float(r.window_start), window_end=float(r.window_end),
                predictions=int(r.predictions), p95_latency_ms=r.p95_latency_ms) for r in rows]
            device_rows = conn.execute(sa.select(
                devices.c.device_id, devices.c.last_seen, devices.c.online,
                devices.c.active_model, devices.c.active_version, devices.c.labels_json)).all()
            seen = [DeviceSeen(r.device_id, float(r.last_seen), bool(r.online), r.active_model,
                               r.active_version) for r in device_rows]
            states = {s.key: s for s in (_state(r) for r in conn.execute(sa.select(alert_states)))}
            outcome = evaluate(states, observations, seen, now, rules)
            current = {**states, **outcome.changed}
            labels = _effective_labels(conn, device_rows)
            judgements = self._judge(conn, rows, device_rows, labels, detection, now)
            judgements += self._segments(conn, labels, detection, now)
            sequential = apply_judgements(current, judgements, now, rules.clear_after)
            changed = {**outcome.changed, **sequential.changed}
            events = outcome.events + sequential.events
            for key, state in changed.items():
                self._write_state(conn, key, state, exists=key in states)
            if events:
                conn.execute(alert_events.insert(), [_event_row(e) for e in events])
            if rows:
                conn.execute(
                    metrics.update()
                    .where(m.device_id == sa.bindparam("b_device"), m.model == sa.bindparam("b_model"),
                           m.version == sa.bindparam("b_version"),
                           m.window_start == sa.bindparam("b_start"))
                    .values(evaluated=True),
                    [{"b_device": r.device_id, "b_model": r.model, "b_version": r.version,
                      "b_start": r.window_start} for r in rows])
        return events

    def _judge(self, conn: sa.Connection, rows: Sequence[Any], device_rows: Sequence[Any],
               labels: Mapping[str, Mapping[str, str]], detection: DetectionSettings,
               now: float) -> list[Judgement]:
        """Feed each device's new windows to its watch, and each group's to the group's."""
        per_device: dict[WatchKey, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for r in rows:
            try:
                summary = json.loads(r.summary_json)
            except ValueError:
                continue  # stored as it came; the metrics store counted it when it arrived
            per_device[(r.device_id, r.model, int(r.version))].append((r.device_id, summary))
        # a group's watch runs where at least two devices of the group run the version: for
        # one device it would only repeat that device's own
        running: dict[tuple[str, str, int], int] = defaultdict(int)
        for d in device_rows:
            if d.active_model is not None and d.active_version is not None:
                group = group_key(detection.group_by, labels.get(d.device_id, {}).get(
                    detection.group_by))
                running[(group, d.active_model, int(d.active_version))] += 1
        per_group: dict[WatchKey, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for (device, model, version), items in per_device.items():
            group = group_key(detection.group_by, labels.get(device, {}).get(detection.group_by))
            per_group[(group, model, version)].extend(items)
        groups = {k: v for k, v in per_group.items() if running.get(k, 0) >= 2}
        watches = load_watches(conn, [*per_device, *groups])
        out = [self._feed(watches, key, items, detection, "device")
               for key, items in per_device.items()]
        out += [self._feed(watches, key, items, detection, "fleet",
                           context={"devices": sorted({d for d, _ in items})})
                for key, items in groups.items()]
        save_watches(conn, watches, now)
        return out

    def _feed(self, watches: Watches, key: WatchKey, items: Sequence[tuple[str, dict[str, Any]]],
              detection: DetectionSettings, scope: str,
              context: Mapping[str, Any] | None = None) -> Judgement:
        watch = watches.loaded.get(key)
        if watch is None:
            watch = build_watch(self.metrics.manifest(key[1], key[2]), detection.watch, scope)
            watches.loaded[key] = watch
        watches.used.add(key)
        decisions = watch.update_summaries([s for _, s in items], sources=[d for d, _ in items])
        info = {"windows": len(items), **(context or {})}
        if watch.missing:
            info["not_watched"] = dict(watch.missing)
        return Judgement(key[0], key[1], key[2], decisions, info)

    def _segments(self, conn: sa.Connection, labels: Mapping[str, Mapping[str, str]],
                  detection: DetectionSettings, now: float) -> list[Judgement]:
        """Once per period: the accuracy of each group of ``segment_label`` against the rest of
        the fleet, per model version, on the labels of the period that just ended."""
        label = detection.segment_label
        period = detection.segment_period_s
        if not label or period <= 0:
            return []
        index = math.floor(now / period) - 1  # the last complete period
        if index < 0:
            return []
        marker = f"{SEGMENT_PERIOD_KEY}{label}"
        w = watch_states.c
        last = conn.execute(sa.select(w.state_json).where(
            w.scope_key == marker, w.model == "", w.version == 0)).scalar()
        if last is not None and json.loads(last).get("period", -1) >= index:
            return []
        start, end = index * period, (index + 1) * period
        m = metrics.c
        counts: dict[tuple[str, int], dict[str, list[int]]] = defaultdict(
            lambda: defaultdict(lambda: [0, 0]))
        for r in conn.execute(sa.select(m.device_id, m.model, m.version, m.labelled, m.accuracy)
                              .where(m.window_end > start, m.window_end <= end,
                                     m.labelled > 0, m.accuracy.is_not(None))):
            segment = labels.get(r.device_id, {}).get(label) or "(none)"
            cell = counts[(r.model, int(r.version))][segment]
            cell[0] += int(round(float(r.accuracy) * int(r.labelled)))
            cell[1] += int(r.labelled)
        state = json.dumps({"period": index, "start": start, "end": end})
        if last is None:
            conn.execute(watch_states.insert().values(scope_key=marker, model="", version=0,
                                                      state_json=state, updated_at=now))
        else:
            conn.execute(watch_states.update().where(
                w.scope_key == marker, w.model == "", w.version == 0)
                .values(state_json=state, updated_at=now))
        out = []
        for (model, version), segments in counts.items():
            if len(segments) < 2:
                continue
            result = segment_test({k: (c, n) for k, (c, n) in segments.items()},
                                  alpha=detection.segment_alpha,
                                  min_labels=detection.segment_min_labels)
            for finding in result["findings"]:
                if finding.get("below") is None:
                    continue  # too few labels to judge this segment
                out.append(Judgement(group_key(label, finding["segment"]), model, version,
                                     [_segment_decision(finding, result, label, start, end)],
                                     {"period": [start, end]}))
        return out

    def _write_state(self, conn: sa.Connection, key: StateKey, state: AlertState,
                     exists: bool) -> None:
        values = {"firing": state.firing, "bad_streak": state.bad_streak,
                  "good_streak": state.good_streak, "model": state.model,
                  "version": state.version, "value": state.value, "threshold": state.threshold,
                  "since": state.since, "updated_at": state.updated_at, "detail": state.detail}
        if exists:
            conn.execute(alert_states.update().where(alert_states.c.kind == key[0],
                                                     alert_states.c.device_id == key[1])
                         .values(**values))
        else:
            conn.execute(alert_states.insert().values(kind=key[0], device_id=key[1], **values))

    def watches(self, scope_key: str | None = None) -> list[dict[str, Any]]:
        """The stored detector states (what `edgewise alerts --explain` shows of a test)."""
        w = watch_states.c
        q = sa.select(watch_states).where(~w.scope_key.startswith(SEGMENT_PERIOD_KEY))
        if scope_key is not None:
            q = q.where(w.scope_key == scope_key)
        with self.db.read() as conn:
            return [{"scope_key": r.scope_key, "model": r.model, "version": r.version,
                     "updated_at": r.updated_at, "state": json.loads(r.state_json)}
                    for r in conn.execute(q)]

    # -- reads ---------------------------------------------------------------------------------

    def alerts(self, *, include_cleared: bool = False, kind: str | None = None,
               device_id: str | None = None) -> list[dict[str, Any]]:
        """Current alert states: firing ones, or every known one with ``include_cleared``.
        ``event_id`` names the event that last fired the alert (``explain`` takes it)."""
        e = alert_events.c
        fired = (sa.select(sa.func.max(e.id)).where(
            e.kind == alert_states.c.kind, e.device_id == alert_states.c.device_id,
            e.event == "fired").scalar_subquery().label("event_id"))
        q = sa.select(alert_states, fired).order_by(alert_states.c.kind,
                                                    alert_states.c.device_id)
        if not include_cleared:
            q = q.where(alert_states.c.firing == sa.true())
        if kind is not None:
            q = q.where(alert_states.c.kind == kind)
        if device_id is not None:
            q = q.where(alert_states.c.device_id == device_id)
        with self.db.read() as conn:
            return [_state_dict(r) for r in conn.execute(q)]

    def explain(self, event_id: int) -> dict[str, Any]:
        """An alert event with everything that explains it: the test that decided, its
        statistic, threshold and false-alarm rate, the evidence (from the event), the alert's
        state now, and the state of the detectors of that device or group and model version."""
        with self.db.read() as conn:
            row = conn.execute(sa.select(alert_events).where(alert_events.c.id == event_id)).first()
            if row is None:
                raise NotFoundError("alert event", str(event_id))
            state = conn.execute(sa.select(alert_states).where(
                alert_states.c.kind == row.kind,
                alert_states.c.device_id == row.device_id)).first()
            watch = None
            if row.model is not None and row.version is not None:
                w = watch_states.c
                raw = conn.execute(sa.select(w.state_json).where(
                    w.scope_key == row.device_id, w.model == row.model,
                    w.version == row.version)).scalar()
                watch = json.loads(raw) if raw is not None else None
        event = {**{k: v for k, v in row._mapping.items() if k != "context_json"},
                 "context": json.loads(row.context_json)}
        return {"event": event, "state": _state_dict(state) if state is not None else None,
                "detectors": _watch_summary(watch)}

    def history(self, *, since: float | None = None, limit: int = 200, kind: str | None = None,
                device_id: str | None = None) -> list[dict[str, Any]]:
        """Alert events, newest first."""
        e = alert_events.c
        q = sa.select(alert_events).order_by(e.id.desc()).limit(limit)
        if since is not None:
            q = q.where(e.ts >= since)
        if kind is not None:
            q = q.where(e.kind == kind)
        if device_id is not None:
            q = q.where(e.device_id == device_id)
        with self.db.read() as conn:
            return [{**{k: v for k, v in r._mapping.items() if k != "context_json"},
                     "context": json.loads(r.context_json)} for r in conn.execute(q)]



def _state(r: Any) -> AlertState:
    return AlertState(
        kind=AlertKind(r.kind), device_id=r.device_id, firing=bool(r.firing),
        bad_streak=int(r.bad_streak), good_streak=int(r.good_streak), model=r.model,
        version=r.version, value=r.value, threshold=r.threshold, since=r.since,
        updated_at=float(r.updated_at), detail=r.detail or "")


def _state_dict(r: Any) -> dict[str, Any]:
    d = dict(r._mapping)
    d["firing"] = bool(d["firing"])
    return d


def _event_row(e: AlertEvent) -> dict[str, Any]:
    return {"ts": e.ts, "kind": e.kind.value, "device_id": e.device_id, "event": e.event,
            "model": e.model, "version": e.version, "value": e.value, "threshold": e.threshold,
            "detail": e.detail, "context_json": json.dumps(e.context, sort_keys=True,
                                                           default=str)}


def _effective_labels(conn: sa.Connection, device_rows: Sequence[Any]
                      ) -> dict[str, dict[str, str]]:
    """Every device's labels as selectors see them: the operator's laid over the device's own."""
    out: dict[str, dict[str, str]] = {}
    for r in device_rows:
        try:
            own = json.loads(r.labels_json or "{}")
        except ValueError:
            own = {}
        out[r.device_id] = {str(k): str(v) for k, v in own.items()} if isinstance(own, dict) \
            else {}
    for device_id, key, value in conn.execute(sa.select(
            device_labels.c.device_id, device_labels.c.key, device_labels.c.value)):
        out.setdefault(device_id, {})[key] = value
    return out


def _segment_decision(finding: Mapping[str, Any], result: Mapping[str, Any], label: str,
                      start: float, end: float) -> Decision:
    """A segment finding as a detector decision: in alarm while the last period judged the group
    significantly less accurate than the rest; cleared when a period judges it not."""
    below = bool(finding["below"])
    acc, rest = finding.get("accuracy"), finding.get("rest_accuracy")
    detail = (f"{label}={finding['segment']}: accuracy {acc:.1%} on {finding['labels']} labels "
              f"against {rest:.1%} on {finding['rest_labels']} for the rest of the fleet, "
              f"p = {finding['p_value']:.2g} " + ("<" if below else ">=")
              + f" {result['level']:.2g} (Fisher's exact test, family-wise alpha "
              f"{result['alpha']:g} over {result['judged']} groups)")
    p = float(finding["p_value"])
    return Decision("segment", below, "alarm" if below else "watching", not below, True,
                    -math.log(max(p, 1e-300)), -math.log(float(result["level"])), detail,
                    {"test": "one-sided Fisher exact test of a group against the rest",
                     "label": label, "period": [start, end], **dict(finding),
                     "alpha": result["alpha"], "level": result["level"],
                     "judged": result["judged"]}, fired=below)


def _watch_summary(watch: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What each detector of a stored watch is doing now (its state and evidence), and what it
    cannot watch; without the bulky per-component statistics."""
    if watch is None:
        return None
    out: dict[str, Any] = {"scope": watch.get("scope"), "task": watch.get("task"),
                           "not_watched": watch.get("missing", {}), "counted": watch.get("stats", {}),
                           "settings": watch.get("settings", {})}
    for name in ("drift", "error_rate", "mae", "bias"):
        detector = watch.get(name)
        if isinstance(detector, Mapping):
            out[name] = {k: v for k, v in detector.items()
                         if not isinstance(v, (list, dict)) or k in ("alarm_state", "state")}
    return out
