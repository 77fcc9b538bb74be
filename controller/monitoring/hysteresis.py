"""Alert state per (kind, device) with hysteresis, so that alerts do not flap.

An alert fires after ``fire_after`` consecutive bad verdicts and clears after ``clear_after``
consecutive good ones; an unknown verdict changes nothing. The whole machine is one function,
:func:`step`, from (state, verdict) to (state, event or None)::

    not firing, bad  -> bad_streak + 1;  fires when bad_streak reaches fire_after
    not firing, good -> bad_streak = 0
    firing,     good -> good_streak + 1; clears when good_streak reaches clear_after
    firing,     bad  -> good_streak = 0
    any,        unknown -> unchanged

Streaks are capped at their target, so a steady state stops changing (nothing to write back).
A window of another model version than the state's restarts the streaks of an alert that is not
firing: the evidence was about the previous version. A firing alert stays firing until the new
version's windows clear it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from controller.monitoring.rules import (
    AlertKind,
    AlertRules,
    DeviceSeen,
    Verdict,
    WindowObservation,
    judge_silence,
    judge_window,
)

FIRED = "fired"
CLEARED = "cleared"

StateKey = tuple[str, str]  # (kind, device_id)


@dataclass(frozen=True)
class AlertState:
    kind: AlertKind
    device_id: str
    firing: bool = False
    bad_streak: int = 0
    good_streak: int = 0
    model: str | None = None
    version: int | None = None
    value: float | None = None
    threshold: float | None = None
    since: float | None = None  # when it last fired
    updated_at: float = 0.0
    detail: str = ""

    @property
    def key(self) -> StateKey:
        return (self.kind.value, self.device_id)

    def same_as(self, other: AlertState) -> bool:
        """Equal but for the time of the last update (nothing worth writing back)."""
        return replace(self, updated_at=0.0) == replace(other, updated_at=0.0)


@dataclass(frozen=True)
class AlertEvent:
    kind: AlertKind
    device_id: str
    event: str  # FIRED or CLEARED
    ts: float
    model: str | None
    version: int | None
    value: float | None
    threshold: float | None
    detail: str
    context: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "device_id": self.device_id, "event": self.event,
                "ts": self.ts, "model": self.model, "version": self.version,
                "value": self.value, "threshold": self.threshold, "detail": self.detail,
                "context": self.context}


def step(state: AlertState, verdict: Verdict, now: float, rules: AlertRules,
         model: str | None = None, version: int | None = None
         ) -> tuple[AlertState, AlertEvent | None]:
    """Apply one verdict to one alert's state (see the module docstring)."""
    if verdict.bad is None:
        return state, None
    fire_after, clear_after = rules.streaks(state.kind)
    if model is not None and (model, version) != (state.model, state.version) and \
            not state.firing:
        state = replace(state, bad_streak=0, good_streak=0)
    if model is not None:
        state = replace(state, model=model, version=version)
    state = replace(state, value=verdict.value, threshold=verdict.threshold,
                    detail=verdict.detail, updated_at=now)
    event_kind: str | None = None
    if verdict.bad:
        bad = min(state.bad_streak + 1, fire_after)
        new = replace(state, bad_streak=bad, good_streak=0)
        if not state.firing and bad >= fire_after:
            new = replace(new, firing=True, since=now)
            event_kind = FIRED
    else:
        good = min(state.good_streak + 1, clear_after)
        new = replace(state, good_streak=good, bad_streak=0)
        if state.firing and good >= clear_after:
            new = replace(new, firing=False)
            event_kind = CLEARED
    if event_kind is None:
        return new, None
    context = {"kind": state.kind.value, "device_id": state.device_id, "event": event_kind,
               "model": new.model, "version": new.version, "value": verdict.value,
               "threshold": verdict.threshold, "detail": verdict.detail,
               "consecutive": fire_after if event_kind == FIRED else clear_after,
               **verdict.context}
    event = AlertEvent(state.kind, state.device_id, event_kind, now, new.model, new.version,
                       verdict.value, verdict.threshold, verdict.detail, context)
    return new, event


@dataclass
class Evaluation:
    """The outcome of :func:`evaluate`: the states that changed, and the events, in order."""

    changed: dict[StateKey, AlertState] = field(default_factory=dict)
    events: list[AlertEvent] = field(default_factory=list)


def evaluate(states: Mapping[StateKey, AlertState], windows: Sequence[WindowObservation],
             devices: Iterable[DeviceSeen], now: float, rules: AlertRules) -> Evaluation:
    """Feed new windows (in order of their end, per device) and the devices' last contact to the
    alert states; return the changed states and the events. ``states`` is not modified."""
    current: dict[StateKey, AlertState] = dict(states)
    out = Evaluation()

    def apply(kind: AlertKind, device_id: str, verdict: Verdict, model: str | None,
              version: int | None) -> None:
        key = (kind.value, device_id)
        before = current.get(key) or AlertState(kind, device_id)
        after, event = step(before, verdict, now, rules, model, version)
        if not after.same_as(before):
            current[key] = after
            out.changed[key] = after
        if event is not None:
            out.events.append(event)

    for obs in sorted(windows, key=lambda w: (w.device_id, w.window_end)):
        for verdict in judge_window(obs, rules):
            apply(verdict.kind, obs.device_id, verdict, obs.model, obs.version)
    for device in devices:
        apply(AlertKind.SILENT, device.device_id, judge_silence(device, now, rules),
              device.active_model, device.active_version)
    return out
