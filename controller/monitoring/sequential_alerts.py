"""Alerts from sequential tests: what the detectors decided becomes alert states and events.

The detectors (:mod:`controller.monitoring.watch`) accumulate evidence across windows and say when
it crossed their level (``fired``), while it stays there (``state == "alarm"``) and when it
ended (``cleared``). An alert follows them: it fires on the first alarm, stays while the test is
in alarm, and clears when the test clears. Two cases have no test state to follow, and clear
after ``clear_after`` judged windows without an alarm: the devices' own per-label tests and ADWIN
(which report alarms but keep their state on the device), and a test of a newer model version
that never alarmed while the alert raised for the old one is still firing.

The scope of an alert is a device (its id) or a group of devices (:func:`group_key`): the
group's detector pools the evidence of all its devices, and both run side by side.

Pure: decisions in, states and events out; no database, no clock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from controller.monitoring.hysteresis import (
    CLEARED,
    FIRED,
    AlertEvent,
    AlertState,
    Evaluation,
    StateKey,
)
from controller.monitoring.rules import AlertKind
from edgewise_monitoring.sequential import Decision

DETECTOR_KINDS: dict[str, AlertKind] = {
    "drift": AlertKind.DRIFT,
    "error_rate": AlertKind.ACCURACY,  # classification: the error rate against the reference
    "mae": AlertKind.ACCURACY,  # regression: the absolute error against the reference MAE
    "bias": AlertKind.BIAS,
    "device_error_rate": AlertKind.CONCEPT,  # the device's per-label test: fires at the label
    "adwin": AlertKind.CONCEPT,
    "segment": AlertKind.SEGMENT,
}
# detectors whose state lives on the device: their decisions only say "alarm in this window"
STATELESS = frozenset({"device_error_rate", "adwin"})
GROUP_PREFIX = "group:"


def group_key(label: str, value: str | None) -> str:
    """The scope key of a group of devices: ``group:site=berlin``; ``group:fleet`` for the whole
    fleet (no label), ``group:site=(none)`` for the devices without the label."""
    if not label:
        return f"{GROUP_PREFIX}fleet"
    return f"{GROUP_PREFIX}{label}={value if value else '(none)'}"


def is_group(key: str) -> bool:
    return key.startswith(GROUP_PREFIX)


@dataclass(frozen=True)
class Judgement:
    """What one watch decided at one evaluation: the scope (device id or group key), the model
    version it watches, its decisions, and context for the events (devices of a group, rows)."""

    key: str
    model: str
    version: int
    decisions: Sequence[Decision]
    context: Mapping[str, Any] = field(default_factory=dict)


def apply_judgements(states: Mapping[StateKey, AlertState], judgements: Sequence[Judgement],
                     now: float, clear_after: int) -> Evaluation:
    """Feed the judgements to the alert states; return the changed states and the events.
    ``states`` is not modified."""
    current: dict[StateKey, AlertState] = dict(states)
    out = Evaluation()
    for judgement in judgements:
        by_kind: dict[AlertKind, list[Decision]] = defaultdict(list)
        for decision in judgement.decisions:
            kind = DETECTOR_KINDS.get(decision.detector)
            if kind is not None:
                by_kind[kind].append(decision)
        for kind, decisions in by_kind.items():
            key = (kind.value, judgement.key)
            before = current.get(key) or AlertState(kind, judgement.key)
            after, event = _step(before, decisions, judgement, now, clear_after)
            if not after.same_as(before):
                current[key] = after
                out.changed[key] = after
            if event is not None:
                out.events.append(event)
    return out


def _in_alarm(d: Decision) -> bool:
    return d.alarm if d.detector in STATELESS else d.state == "alarm"


def _step(state: AlertState, decisions: Sequence[Decision], judgement: Judgement, now: float,
          clear_after: int) -> tuple[AlertState, AlertEvent | None]:
    alarming = [d for d in decisions if _in_alarm(d)]
    # the decision that speaks for the alert now: the one that fired, else one in alarm, else
    # the latest judged one
    lead = next((d for d in decisions if d.fired), None) or (alarming[0] if alarming else None) \
        or next((d for d in reversed(decisions) if d.judged), decisions[-1])
    state = replace(state, model=judgement.model, version=judgement.version,
                    value=_finite(lead.score), threshold=_finite(lead.threshold),
                    detail=lead.detail, updated_at=now)
    if not state.firing:
        if alarming:
            fired = replace(state, firing=True, since=now, bad_streak=1, good_streak=0)
            return fired, _event(fired, FIRED, lead, judgement, now)
        return replace(state, bad_streak=0, good_streak=0), None
    if alarming:
        return replace(state, good_streak=0), None
    if any(d.cleared for d in decisions):
        cleared = replace(state, firing=False, good_streak=0, bad_streak=0)
        return cleared, _event(cleared, CLEARED, lead, judgement, now)
    if any(d.judged for d in decisions):
        good = state.good_streak + 1
        if good >= clear_after:
            cleared = replace(state, firing=False, good_streak=0, bad_streak=0)
            return cleared, _event(cleared, CLEARED, lead, judgement, now,
                                   quiet_windows=good)
        return replace(state, good_streak=good), None
    return state, None


def _event(state: AlertState, event: str, lead: Decision, judgement: Judgement, now: float,
           quiet_windows: int | None = None) -> AlertEvent:
    context: dict[str, Any] = {
        "kind": state.kind.value, "device_id": state.device_id, "event": event,
        "scope": "group" if is_group(state.device_id) else "device",
        "model": state.model, "version": state.version, "value": state.value,
        "threshold": state.threshold, "detail": lead.detail, "decision": lead.to_dict(),
        **judgement.context}
    if quiet_windows is not None:
        context["cleared_by"] = f"{quiet_windows} judged windows without an alarm"
    return AlertEvent(state.kind, state.device_id, event, now, state.model, state.version,
                      state.value, state.threshold, lead.detail, context)


def _finite(value: float) -> float | None:
    return value if value == value and abs(value) != float("inf") else None
