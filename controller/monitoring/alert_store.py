"""Alert states, alert history and retraining runs in the controller database.

:meth:`AlertStore.evaluate` is one write transaction: it takes the metrics windows not yet
evaluated (oldest first), the devices' last contact and the stored alert states, runs the pure
evaluator (:mod:`controller.monitoring`), writes back the states that changed and the events, and
marks the windows evaluated. Several controller replicas may call it at once: PostgreSQL
serialises them on an advisory lock, SQLite on its write lock, so every window is judged once.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

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
from controller.monitoring.rules import DriftFinding, Histogram, familywise_drift
from controller.storage.db import Database
from controller.storage.tables import alert_events, alert_states, devices, metrics, retrain_runs
from edgewise_monitoring import profile_id

# pg_advisory_xact_lock key for alert evaluation: b"EwAlerts" as a big-endian int64.
ALERT_LOCK_KEY = int.from_bytes(b"EwAlerts", "big")
RUNNING = "running"
PREDICTION = "(prediction)"  # the name of the prediction histogram among the features


class AlertStore:
    def __init__(self, db: Database, metrics_store: MetricsStore) -> None:
        self.db = db
        self.metrics = metrics_store

    # -- evaluation ----------------------------------------------------------------------------

    def evaluate(self, now: float, rules: AlertRules, max_windows: int = 5000) -> list[AlertEvent]:
        """Judge the windows not evaluated yet and every device's silence; return the events."""
        m = metrics.c
        with self.db.write() as conn:
            if self.db.dialect_name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ALERT_LOCK_KEY)))
            rows = conn.execute(
                sa.select(m.device_id, m.model, m.version, m.window_start, m.window_end,
                          m.predictions, m.labelled, m.accuracy, m.p95_latency_ms,
                          m.drift_psi, m.drifted, m.summary_json)
                .where(m.evaluated == sa.false())
                .order_by(m.window_end).limit(max_windows)).all()
            observations = [self._observation(r, rules) for r in rows]
            seen = [DeviceSeen(r.device_id, float(r.last_seen), bool(r.online), r.active_model,
                               r.active_version)
                    for r in conn.execute(sa.select(
                        devices.c.device_id, devices.c.last_seen, devices.c.online,
                        devices.c.active_model, devices.c.active_version))]
            states = {s.key: s for s in (_state(r) for r in conn.execute(sa.select(alert_states)))}
            outcome = evaluate(states, observations, seen, now, rules)
            for key, state in outcome.changed.items():
                self._write_state(conn, key, state, exists=key in states)
            if outcome.events:
                conn.execute(alert_events.insert(), [_event_row(e) for e in outcome.events])
            if rows:
                conn.execute(
                    metrics.update()
                    .where(m.device_id == sa.bindparam("b_device"), m.model == sa.bindparam("b_model"),
                           m.version == sa.bindparam("b_version"),
                           m.window_start == sa.bindparam("b_start"))
                    .values(evaluated=True),
                    [{"b_device": r.device_id, "b_model": r.model, "b_version": r.version,
                      "b_start": r.window_start} for r in rows])
        return outcome.events

    def _observation(self, r: Any, rules: AlertRules) -> WindowObservation:
        summary = json.loads(r.summary_json)
        derived = summary.get("derived", {})
        score = derived.get("score", {})
        ref_acc, ref_mae = self.metrics.reference_quality(r.model, int(r.version))
        finding = self._drift(summary, r.model, int(r.version), rules)
        return WindowObservation(
            device_id=r.device_id, model=r.model, version=int(r.version),
            task=str(summary.get("task", "classification")),
            window_start=float(r.window_start), window_end=float(r.window_end),
            predictions=int(r.predictions), labelled=int(r.labelled), accuracy=r.accuracy,
            mae=score.get("mae"), p95_latency_ms=r.p95_latency_ms,
            drift_psi=finding.worst_psi, drift_threshold=finding.worst_threshold,
            drifted=finding.drifted,
            drifted_features=tuple(n for n in finding.names if n != PREDICTION),
            prediction_drifted=PREDICTION in finding.names,
            reference_accuracy=ref_acc, reference_mae=ref_mae)

    def _drift(self, summary: dict[str, Any], model: str, version: int,
               rules: AlertRules) -> DriftFinding:
        """The window's drift verdict with the family-wise threshold, from its counts and the
        registered profile; the device's own verdicts when the profile is not available."""
        profile = self.metrics.profile(model, version)
        params = summary.get("params", {})
        try:
            if profile is None or profile_id(profile) != summary.get("profile_id"):
                raise LookupError("no matching profile")
            histograms = [Histogram(f["name"], p["proportions"], [*f["counts"], f["other"]])
                          for f, p in zip(summary["features"], profile.get("features", []),
                                          strict=True)]
            pred, pred_ref = summary.get("prediction"), profile.get("prediction")
            if pred is not None and pred_ref is not None:
                histograms.append(Histogram(PREDICTION, pred_ref["proportions"],
                                            [*pred["counts"], pred["other"]]))
            return familywise_drift(
                histograms, int(summary["reference_n"]), alpha=rules.drift_alpha,
                base=float(params.get("drift_base", 0.1)),
                eps=float(params.get("psi_eps", 1e-4)),
                min_rows_per_bin=int(params.get("min_rows_per_bin", 10)))
        except (LookupError, KeyError, TypeError, ValueError):
            drift = summary.get("derived", {}).get("drift", {})
            verdicts = [f for f in drift.get("features", []) if f.get("drifted") is not None]
            pred_verdict = drift.get("prediction") or {}
            if pred_verdict.get("drifted") is not None:
                verdicts.append({**pred_verdict, "name": PREDICTION})
            if not verdicts:
                return DriftFinding(None, None, None, ())
            worst = max(verdicts, key=lambda f: f["psi"] / f["threshold"])
            names = tuple(f["name"] for f in verdicts if f["drifted"])
            return DriftFinding(bool(names), worst["psi"], worst["threshold"], names)

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

    # -- reads ---------------------------------------------------------------------------------

    def alerts(self, *, include_cleared: bool = False, kind: str | None = None,
               device_id: str | None = None) -> list[dict[str, Any]]:
        """Current alert states: firing ones, or every known one with ``include_cleared``."""
        q = sa.select(alert_states).order_by(alert_states.c.kind, alert_states.c.device_id)
        if not include_cleared:
            q = q.where(alert_states.c.firing == sa.true())
        if kind is not None:
            q = q.where(alert_states.c.kind == kind)
        if device_id is not None:
            q = q.where(alert_states.c.device_id == device_id)
        with self.db.read() as conn:
            return [_state_dict(r) for r in conn.execute(q)]

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

    # -- retraining runs -----------------------------------------------------------------------

    def start_retrain(self, kind: str, model: str, version: int | None, action: str,
                      context: dict[str, Any]) -> int:
        with self.db.write() as conn:
            result = conn.execute(retrain_runs.insert().values(
                started_at=time.time(), kind=kind, model=model, version=version, action=action,
                status=RUNNING, detail="", context_json=json.dumps(context, sort_keys=True))
                .returning(retrain_runs.c.id))
            return int(result.scalar_one())

    def finish_retrain(self, run_id: int, status: str, detail: str,
                       new_version: int | None = None,
                       context: dict[str, Any] | None = None) -> None:
        values: dict[str, Any] = {"finished_at": time.time(), "status": status,
                                  "detail": detail[:4000], "new_version": new_version}
        if context is not None:
            values["context_json"] = json.dumps(context, sort_keys=True, default=str)
        with self.db.write() as conn:
            conn.execute(retrain_runs.update().where(retrain_runs.c.id == run_id).values(**values))

    def last_retrain(self, kind: str, model: str) -> float | None:
        """When a retraining for this alert kind and model last started (for the cool-down)."""
        q = sa.select(sa.func.max(retrain_runs.c.started_at)).where(
            retrain_runs.c.kind == kind, retrain_runs.c.model == model)
        with self.db.read() as conn:
            value = conn.execute(q).scalar()
        return float(value) if value is not None else None

    def retrain_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        q = sa.select(retrain_runs).order_by(retrain_runs.c.id.desc()).limit(limit)
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
