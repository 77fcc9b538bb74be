"""What the rollout runner feeds the engine, and what operators see of a rollout.

* Figures: per device and model version, accuracy (with the labelled count), p95 latency, drift.
  :class:`MetricsFirstFigures` reads the monitoring engineer's ``MetricsStore`` (agent window
  summaries, drift included) and falls back, device by device, to :class:`TelemetryFigures`,
  computed from the raw ``prediction``/``feedback`` telemetry, for devices whose agents send no
  metrics windows (yet): those have accuracy and latency but no drift.
* :func:`observe` turns device rows and figures into the engine's ``DeviceObservation``s.
* :func:`plan_ownership`: which devices each rollout must let go of, and which late joiners it
  takes (one owner per device, the newest rollout wins).
* :func:`rollout_view`: the JSON the API and ``edgewise rollout status`` show.

Everything but the two figure sources is pure.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa

from controller.fleet.device_registry import DeviceRow
from controller.fleet.selectors import Selector, SelectorError, parse_selector
from controller.fleet.versions import AgentVersion
from controller.monitoring.figures import VersionFigures
from controller.rollouts.decisions import Abort, Advance, Decision, Pause, decision_to_dict
from controller.rollouts.device_classes import of_other_class, skipped_view
from controller.rollouts.engine import RolloutState, Status, late_joiners, target_of
from controller.rollouts.gates import (
    FAILED_UPDATE_STATES,
    DeviceObservation,
    ModelVersion,
    evaluate_gates,
)
from controller.rollouts.spec_parse import spec_to_dict
from controller.rollouts.store import FINISHED, LIVE, OWNING, RolloutRecord, rollout_of
from controller.storage.db import Database
from controller.storage.tables import telemetry

log = logging.getLogger("edgewise.controller.rollouts")

_IN_CHUNK = 500
BASELINE_WINDOW_S = 3600.0  # the previous version's accuracy is measured over the hour before


# -- figures -----------------------------------------------------------------------------------

class FiguresLike(Protocol):
    @property
    def accuracy(self) -> float | None: ...
    @property
    def labelled(self) -> int: ...
    @property
    def p95_latency_ms(self) -> float | None: ...
    @property
    def drift_psi(self) -> float | None: ...
    @property
    def predictions(self) -> int: ...


class FiguresSource(Protocol):
    def version_figures(self, device_ids: Sequence[str], model: str, version: int,
                        since: float) -> Mapping[str, FiguresLike]: ...




class TelemetryFigures:
    """Accuracy, labelled count and p95 latency from the raw telemetry table.

    Feedback is counted for the model the agent ran when the label arrived (the ``model`` and
    ``version`` of the feedback record), so labels of the old version's last predictions can
    land on the new one in the first ``feedback delay`` after a switch. No drift: raw telemetry
    carries no feature histograms.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def version_figures(self, device_ids: Sequence[str], model: str, version: int,
                        since: float) -> dict[str, VersionFigures]:
        t = telemetry.c
        latencies: dict[str, list[float]] = defaultdict(list)
        counts: dict[str, int] = defaultdict(int)
        labelled: dict[str, tuple[int, int]] = {}
        ids = list(device_ids)
        with self.db.read() as conn:
            for i in range(0, len(ids), _IN_CHUNK):
                chunk = ids[i:i + _IN_CHUNK]
                preds = sa.select(t.device_id, t.latency_ms, t.n).where(
                    t.kind.in_(("prediction", "predictions")), t.model == model,
                    t.version == version, t.ts >= since, t.device_id.in_(chunk))
                for r in conn.execute(preds):
                    # a columnar row: n predictions at their mean latency
                    counts[r.device_id] += int(r.n)
                    if r.latency_ms is not None:
                        latencies[r.device_id].extend([float(r.latency_ms)] * int(r.n))
                fb = (sa.select(t.device_id, sa.func.count(t.correct).label("n"),
                                sa.func.sum(sa.case((t.correct == sa.true(), 1), else_=0))
                                .label("hits"))
                      .where(t.kind == "feedback", t.model == model, t.version == version,
                             t.ts >= since, t.correct.is_not(None), t.device_id.in_(chunk))
                      .group_by(t.device_id))
                for r in conn.execute(fb):
                    labelled[r.device_id] = (int(r.n), int(r.hits or 0))
        out = {}
        for d in ids:
            n, hits = labelled.get(d, (0, 0))
            out[d] = VersionFigures(accuracy=hits / n if n else None, labelled=n,
                             p95_latency_ms=p95(latencies.get(d, [])), drift_psi=None,
                             predictions=counts.get(d, 0))
        return out


def p95(values: Sequence[float]) -> float | None:
    """Nearest-rank 95th percentile (the value 95% of the samples are at or below)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


class MetricsFirstFigures:
    """The metrics store's figures where a device sent metrics windows, else raw telemetry's."""

    def __init__(self, metrics: FiguresSource | None, fallback: FiguresSource) -> None:
        self.metrics = metrics
        self.fallback = fallback
        self._warned = False

    def version_figures(self, device_ids: Sequence[str], model: str, version: int,
                        since: float) -> dict[str, FiguresLike]:
        out: dict[str, FiguresLike] = {}
        if self.metrics is not None:
            try:
                out = {d: f for d, f in self.metrics.version_figures(
                    device_ids, model, version, since).items() if f.predictions > 0}
            except Exception:  # the metrics store is optional for gates: say so once, go on
                if not self._warned:
                    log.exception("metrics store unavailable; rollout gates use raw telemetry")
                    self._warned = True
        rest = [d for d in device_ids if d not in out]
        if rest:
            out.update(self.fallback.version_figures(rest, model, version, since))
        return out


class CostLike(Protocol):
    @property
    def session_bytes(self) -> float | None: ...
    @property
    def cpu_ms_per_prediction(self) -> float | None: ...


class CostSource(Protocol):
    """A model version's resource cost per device (``controller/device_health/store.py``)."""

    def version_costs(self, device_ids: Sequence[str], model: str, version: int,
                      since: float) -> Mapping[str, CostLike]: ...

    def baseline_costs(self, device_ids: Sequence[str], model: str, version: int,
                       since: float, until: float) -> Mapping[str, CostLike]: ...


# -- observations --------------------------------------------------------------------------------

def observe(rows: Mapping[str, DeviceRow], device_ids: Sequence[str], target: ModelVersion,
            figures: Mapping[str, FiguresLike] | None = None,
            baselines: Mapping[str, float | None] | None = None,
            costs: Mapping[str, CostLike] | None = None,
            baseline_costs: Mapping[str, CostLike] | None = None
            ) -> dict[str, DeviceObservation]:
    """The engine's view of ``device_ids``; devices without a row are left out (unknown).

    A device's ``failed`` (or ``rolled_back``) state counts against this rollout only if the
    version it failed is the rollout's (its reported target): a device still showing an old
    failure has not tried this version yet. Whether a ``rolled_back`` device gave up on the
    target or went back onto it is :meth:`DeviceObservation.failed_on`'s call.
    """
    out = {}
    for d in device_ids:
        row = rows.get(d)
        if row is None:
            continue
        state = row.state or "idle"
        if state in FAILED_UPDATE_STATES and row.target != target:
            state = "idle"
        f = figures.get(d) if figures else None
        cost = costs.get(d) if costs else None
        base = baseline_costs.get(d) if baseline_costs else None
        out[d] = DeviceObservation(
            active=row.active, update_state=state, online=row.online,
            accuracy=f.accuracy if f else None, labelled=f.labelled if f else 0,
            p95_latency_ms=f.p95_latency_ms if f else None,
            drift_psi=f.drift_psi if f else None,
            baseline_accuracy=baselines.get(d) if baselines else None,
            session_bytes=cost.session_bytes if cost else None,
            cpu_ms_per_prediction=cost.cpu_ms_per_prediction if cost else None,
            baseline_session_bytes=base.session_bytes if base else None,
            baseline_cpu_ms_per_prediction=base.cpu_ms_per_prediction if base else None)
    return out


def observe_agents(rows: Mapping[str, DeviceRow], device_ids: Sequence[str],
                   target: AgentVersion) -> dict[str, DeviceObservation]:
    """The engine's view of ``device_ids`` in an agent rollout: ``active`` is the agent version
    each reports, and its self-update state is read into the update states the gates know:

    * done (``active``): it runs ``target`` and its agent reports it ``current`` for ``target``
      (the launcher committed it after its probation);
    * gave up (``failed``): its agent reports ``target`` ``failed`` (the launcher restored the
      old agent after the new one failed its probation, or it failed here before) or
      ``refused`` (the bundle did not verify, download or stage);
    * in progress otherwise (``probation`` while it runs ``target`` uncommitted).
    """
    out = {}
    for d in device_ids:
        row = rows.get(d)
        if row is None:
            continue
        asked = row.agent_update_target == target.version
        where = row.agent_update_state if asked else None
        if where in ("failed", "refused"):
            state = "failed"
        elif row.agent_version == target.version:
            state = "active" if where == "current" else "probation"
        else:
            state = "idle"
        out[d] = DeviceObservation(
            active=AgentVersion(row.agent_version) if row.agent_version else None,
            update_state=state, online=row.online)
    return out


# -- ownership: one rollout per device -------------------------------------------------------------

@dataclass(frozen=True)
class Ownership:
    releases: Mapping[int, Mapping[int, list[str]]]  # rollout -> {taker: devices to let go}
    joiners: Mapping[int, list[str]]  # rollout id -> late joiners it takes
    # rollout id -> devices it matches that are known to be of another class than its version
    # (device -> class), not yet recorded as skipped: planned ones not sent yet, late joiners
    skips: Mapping[int, Mapping[str, str]] = field(default_factory=dict)


def plan_ownership(records: Sequence[RolloutRecord], rows: Mapping[str, DeviceRow]) -> Ownership:
    """:func:`plan_ownership_of_kind` for model rollouts and for agent rollouts apart: a device
    has one model owner and one agent owner (they send different orders)."""
    models = plan_ownership_of_kind([r for r in records if r.spec.kind != "agent"], rows, True)
    agents = plan_ownership_of_kind([r for r in records if r.spec.kind == "agent"], rows, False)
    return Ownership({**models.releases, **agents.releases}, {**models.joiners, **agents.joiners},
                     models.skips)


def plan_ownership_of_kind(records: Sequence[RolloutRecord], rows: Mapping[str, DeviceRow],
                           model_orders: bool) -> Ownership:
    """Keep one owner per device and hand unowned matching devices to the right rollout.

    * A device planned by several owning rollouts (a newer one took it from a completed one)
      leaves the older ones once the newer one has sent it its version.
    * A device no owning rollout planned is a late joiner of the newest matching rollout
      (highest priority first) that is newer than whatever ordered its desired state last,
      unless that was an all-at-once deployment (``dep-...``): an explicit order stands
      until a rollout started after it plans the device. (``model_orders`` False: agent
      rollouts, which the devices' recorded model orders say nothing about.)
    * A rollout whose version is for one device class takes no device known to be of another
      (it may join a rollout it fits); such a device, late joiner or planned and not sent yet,
      is a skip of that rollout (:func:`~controller.rollouts.engine.skip_devices`).
    """
    owning = sorted((r for r in records if r.status in OWNING), key=lambda r: r.id)
    holder: set[str] = set()
    sent_by: dict[str, int] = {}
    for record in owning:
        holder.update(record.state.assignment)
        sent_by.update({d: record.id for d in record.state.previous})
    releases: dict[int, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for record in owning:
        for device in record.state.assignment:
            taker = sent_by.get(device, -1)
            if taker > record.id:
                releases[record.id][taker].append(device)
    selectors: dict[int, Selector] = {}
    for record in owning:
        try:
            selectors[record.id] = parse_selector(record.spec.selector)
        except SelectorError:  # stored specs were validated; never crash the loop on one
            continue
    candidates: dict[int, list[str]] = defaultdict(list)
    skips: dict[int, dict[str, str]] = defaultdict(dict)
    takers = [r for r in owning if r.status is not Status.ABORTING]
    for record in takers:
        for device in record.state.assignment:
            row = rows.get(device)
            if row is not None and device not in record.state.previous \
                    and _skips(record, row.device_class):
                skips[record.id][device] = str(row.device_class)
    for device, row in rows.items():
        if device in holder:
            continue
        owner = rollout_of(row.desired_deployment_id) if model_orders else None
        if model_orders and row.desired_deployment_id is not None and owner is None:
            continue  # an all-at-once deployment put it there
        best: RolloutRecord | None = None
        for record in takers:
            if record.id in selectors and (owner is None or record.id > owner) \
                    and selectors[record.id].matches(row.labels):
                if _skips(record, row.device_class):
                    skips[record.id][device] = str(row.device_class)
                elif best is None or (record.spec.priority, record.id) \
                        > (best.spec.priority, best.id):
                    best = record
        if best is not None:
            candidates[best.id].append(device)
    by_id = {r.id: r for r in owning}
    joiners = {rid: late_joiners(by_id[rid].spec, by_id[rid].state, devices)
               for rid, devices in candidates.items()}
    return Ownership({k: dict(v) for k, v in releases.items()},
                     {k: v for k, v in joiners.items() if v},
                     {rid: new for rid, found in skips.items()
                      if (new := {d: c for d, c in found.items()
                                  if by_id[rid].state.skipped.get(d) != c})})


def _skips(record: RolloutRecord, device_class: str | None) -> bool:
    """Whether ``record``'s version is for a class a device of ``device_class`` is not."""
    return of_other_class(record.state.device_class, device_class)


# -- the operator's view -------------------------------------------------------------------------

def rollout_view(record: RolloutRecord, observations: Mapping[str, DeviceObservation],
                 now: float, decision: Decision | None = None,
                 device_lists: bool = False) -> dict[str, Any]:
    """Everything ``rollout status`` shows: waves with counts, gates against thresholds
    (``device_lists``: each wave's devices too, as a dry run shows the canaries)."""
    spec, state = record.spec, record.state
    target = target_of(spec)
    waves = []
    for w in range(state.wave_count):
        planned = sorted(d for d, wave in state.assignment.items() if wave == w)
        sent = [d for d in planned if d in state.previous]
        running = [d for d in planned if (o := observations.get(d)) is not None and o.runs(target)]
        failed = [d for d in planned if (o := observations.get(d)) is not None
                  and o.failed_on(target)]
        waves.append({
            "wave": w + 1,
            "size": str(spec.waves[w]) if w < len(spec.waves) else "",
            "devices": len(planned), "sent": len(sent), "active": len(running),
            "failed": len(failed), "failed_devices": failed,
            **({"device_ids": planned} if device_lists else {}),
            "phase": _phase(state, w, bool(sent)),
        })
    gates: list[dict[str, Any]] = []
    if 0 <= state.wave < state.wave_count:
        gates = [g.to_dict() for g in evaluate_gates(
            spec.gates, state.sent_in(state.wave), observations, target)]
    view: dict[str, Any] = {
        "id": record.id, "name": record.name, "model": spec.model, "version": spec.version,
        "kind": spec.kind, "agent_version": spec.agent_version or None,
        "status": state.status.value, "priority": spec.priority,
        "live": state.status in LIVE, "finished": state.status in FINISHED,
        "created_at": record.created_at, "updated_at": record.updated_at,
        "created_by": record.created_by,
        "deployment_id": record.deployment_id if record.id else None,
        "spec": spec_to_dict(spec),
        "wave": state.wave + 1, "wave_count": state.wave_count,
        "targets": len(state.assignment), "sent": len(state.previous),
        # the version's device class (null: any) and the devices left out for theirs
        "device_class": state.device_class,
        "skipped": skipped_view(state.device_class, state.skipped),
        "active": sum(1 for d in state.assignment
                      if (o := observations.get(d)) is not None and o.runs(target)),
        "waves": waves, "gates": gates, "soak": _soak(record, state, now),
        "reasons": list(state.reasons[-50:]),
    }
    if decision is not None:
        next_step = decision_to_dict(decision)
        if isinstance(decision, Advance):  # the device list can be long; counts suffice here
            next_step = {"kind": "advance", "wave": decision.wave + 1,
                         "devices": len(decision.devices)}
        view["next"] = next_step
        view["message"] = _message(decision, state)
    if state.status in (Status.ABORTING, Status.ABORTED, Status.FAILED):
        view["reverted"] = {d: None if mv is None else str(mv)
                            for d, mv in sorted(state.previous.items())}
        view["unconfirmed"] = sorted(d for d, prev in state.previous.items()
                                     if (o := observations.get(d)) is None or o.active != prev)
    return view


def _phase(state: RolloutState, wave: int, sent: bool) -> str:
    if state.status in (Status.ABORTING, Status.ABORTED, Status.FAILED):
        return "reverted" if sent else "not sent"
    if wave < state.wave or (wave == state.wave and state.status is Status.COMPLETED):
        return "done"
    return "current" if wave == state.wave else "waiting"


def _soak(record: RolloutRecord, state: RolloutState, now: float) -> dict[str, Any] | None:
    if not 0 <= state.wave < state.wave_count:
        return None
    seconds = record.spec.soak_for(state.wave)
    elapsed = (now - state.soak_started_at if state.status is Status.SOAKING
               and state.soak_started_at is not None else None)
    return {"seconds": seconds, "elapsed": elapsed}


def _message(decision: Decision, state: RolloutState) -> str:
    why = getattr(decision, "why", None)
    if isinstance(why, str) and why:
        return why
    if isinstance(decision, (Pause, Abort)):
        return f"{decision.kind} on gate {decision.gate}: {decision.detail}"
    if isinstance(decision, Advance):
        return f"sending wave {decision.wave + 1}/{state.wave_count} to {len(decision.devices)} devices"
    return state.reasons[-1] if state.reasons else state.status.value
