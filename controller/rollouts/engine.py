"""The rollout engine: given a spec, the persisted state, what devices report and the time, what
happens next. No database, no MQTT, no clock.

The controller loop is::

    decision = decide(spec, state, observations, now)   # pure
    ...send desired states / reverts named by the decision, write the audit log...
    state = apply(state, decision, now)                   # pure; persist it

``decide`` reads only its arguments, so a controller that restarts from a persisted
:class:`RolloutState` makes exactly the decisions it would have made without the restart.

Status transitions (the table :data:`TABLE`; WAIT only flips RUNNING <-> SOAKING)::

    PENDING  --advance--> RUNNING --(wave reported)--> SOAKING --advance--> RUNNING ...
    RUNNING/SOAKING --complete--> COMPLETED  (late joiners: COMPLETED --advance--> COMPLETED)
    PENDING/RUNNING/SOAKING --pause--> PAUSED --resume--> RUNNING (wave clock restarts)
    PENDING/RUNNING/SOAKING/PAUSED --abort--> ABORTING --complete--> ABORTED
                                                     ABORTING --fail--> FAILED

Late joiners (devices that match the selector after the start) are assigned to the *last*
wave: they wait for every gate like the bulk of the fleet, and once the last wave has started
(or the rollout is COMPLETED) the next ``decide`` sends them right away as a top-up of that wave.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from controller.errors import EdgewiseError, ValidationError
from controller.fleet.versions import AgentVersion, Version
from controller.rollouts.decisions import Abort, Advance, Complete, Decision, Fail, Pause, Wait
from controller.rollouts.gates import (
    REPORTING,
    GateResult,
    ModelVersion,
    Observations,
    evaluate_gates,
)
from controller.rollouts.spec import RolloutSpec
from controller.rollouts.wave_plan import plan_waves

STATE_SCHEMA = 1


class TransitionError(EdgewiseError):
    """A decision was applied to a state it does not belong to (e.g. advancing an ABORTED one)."""


class Status(Enum):
    PENDING = "pending"
    RUNNING = "running"  # the current wave was sent; waiting for it to report
    SOAKING = "soaking"  # the wave reports the version; waiting out soak time and gates
    PAUSED = "paused"
    COMPLETED = "completed"
    ABORTING = "aborting"  # reverts sent; waiting for devices to confirm
    ABORTED = "aborted"
    FAILED = "failed"  # an abort could not confirm every revert in time


@dataclass(frozen=True)
class RolloutState:
    """Everything the engine remembers between ticks; persisted as :meth:`to_dict`.

    ``assignment`` maps every target device to its wave; ``previous`` holds the devices already
    sent the version (the "moved" ones) with what they ran before. ``device_class``: the class
    the version is for (None: any device); ``skipped`` the selected devices known to be of
    another class (device -> its class), which are not targets (:mod:`.device_classes`).
    """

    status: Status = Status.PENDING
    wave: int = -1
    wave_started_at: float | None = None
    soak_started_at: float | None = None
    wave_count: int = 0
    assignment: Mapping[str, int] = field(default_factory=dict)
    previous: Mapping[str, Version | None] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    abort_started_at: float | None = None
    device_class: str | None = None
    skipped: Mapping[str, str] = field(default_factory=dict)

    def sent_in(self, wave: int) -> list[str]:
        return sorted(d for d, w in self.assignment.items() if w == wave and d in self.previous)

    def unsent_in(self, wave: int) -> list[str]:
        return sorted(d for d, w in self.assignment.items()
                      if w == wave and d not in self.previous)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": STATE_SCHEMA,
            "status": self.status.value,
            "wave": self.wave,
            "wave_started_at": self.wave_started_at,
            "soak_started_at": self.soak_started_at,
            "wave_count": self.wave_count,
            "assignment": dict(self.assignment),
            "previous": {d: _mv_out(mv) for d, mv in self.previous.items()},
            "reasons": list(self.reasons),
            "abort_started_at": self.abort_started_at,
            "device_class": self.device_class,
            "skipped": dict(self.skipped),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RolloutState:
        """Load a persisted state; raise ValidationError rather than resume from garbage."""
        try:
            if d["schema"] != STATE_SCHEMA:
                raise ValidationError(f"rollout state schema {d['schema']!r} is not {STATE_SCHEMA}")
            return cls(
                status=Status(d["status"]),
                wave=int(d["wave"]),
                wave_started_at=_opt_float(d["wave_started_at"]),
                soak_started_at=_opt_float(d["soak_started_at"]),
                wave_count=int(d["wave_count"]),
                assignment={str(k): int(v) for k, v in d["assignment"].items()},
                previous={str(k): _mv_in(v) for k, v in d["previous"].items()},
                reasons=tuple(str(r) for r in d["reasons"]),
                abort_started_at=_opt_float(d["abort_started_at"]),
                # a state stored before device classes has neither: any device, none skipped
                device_class=_opt_str(d.get("device_class")),
                skipped={str(k): str(v) for k, v in (d.get("skipped") or {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"corrupt rollout state: {exc!r}") from exc


def initial_state(spec: RolloutSpec, targets: Iterable[str], *,
                  device_class: str | None = None,
                  skipped: Mapping[str, str] | None = None) -> RolloutState:
    """Plan the waves for the matched devices (call :func:`validate` first). ``device_class``:
    the class the version is for; ``skipped``: the matched devices known to be of another
    class, left out of the plan (:func:`~controller.rollouts.device_classes.split_by_class`)."""
    plan = plan_waves(sorted(set(targets)), spec.waves, salt=_salt(spec))
    return RolloutState(wave_count=len(plan),
                        assignment={d: w for w, devices in enumerate(plan) for d in devices},
                        device_class=device_class, skipped=dict(skipped or {}))


def decide(spec: RolloutSpec, state: RolloutState, observations: Observations,
           now: float) -> Decision:
    """The next step for this rollout; reads nothing but its arguments."""
    if state.status is Status.PENDING:
        return _next_wave(spec, state, observations, after=-1)
    if state.status in (Status.RUNNING, Status.SOAKING):
        return _judge_wave(spec, state, observations, now)
    if state.status is Status.ABORTING:
        return _judge_revert(spec, state, observations, now)
    if state.status is Status.COMPLETED and state.unsent_in(state.wave):
        return _advance(state.wave, state.unsent_in(state.wave), observations)
    last = state.reasons[-1] if state.reasons else ""
    return Wait(f"rollout is {state.status.value}" + (f": {last}" if last else ""))


def apply(state: RolloutState, decision: Decision, now: float) -> RolloutState:
    """The state after acting on ``decision``; raise :class:`TransitionError` if it does not fit."""
    if isinstance(decision, Wait):
        if state.status in (Status.RUNNING, Status.SOAKING):
            status = Status.SOAKING if decision.soaking else Status.RUNNING
            if status is state.status:
                return state
            return replace(state, status=status,
                           soak_started_at=now if decision.soaking else None)
        return state
    status = _next_status(state.status, decision.kind)
    if isinstance(decision, Advance):
        if decision.wave < state.wave:
            raise TransitionError(f"cannot go back from wave {state.wave + 1} "
                                  f"to wave {decision.wave + 1}")
        previous = {**state.previous, **decision.previous}
        if decision.wave == state.wave:  # late joiners topping up a wave: its clocks run on
            return replace(state, previous=previous, reasons=state.reasons + (
                f"wave {decision.wave + 1}/{state.wave_count}: {len(decision.devices)} "
                "late joiners sent",))
        return replace(state, status=status, wave=decision.wave, previous=previous,
                       wave_started_at=now, soak_started_at=None,
                       reasons=state.reasons + (
                           f"wave {decision.wave + 1}/{state.wave_count} started: "
                           f"{len(decision.devices)} devices",))
    if isinstance(decision, Abort):
        return replace(state, status=status, abort_started_at=now, reasons=state.reasons + (
            f"abort ({_gate_text(decision)}): reverting {len(decision.revert)} devices",))
    if isinstance(decision, Pause):
        return replace(state, status=status,
                       reasons=state.reasons + (f"paused ({_gate_text(decision)})",))
    return replace(state, status=status, reasons=state.reasons + (decision.why,))


def resume(state: RolloutState, now: float, why: str = "resumed by operator") -> RolloutState:
    """Continue a PAUSED rollout. The wave clock restarts: soak and report timeout start over,
    so a wave paused for a reporting timeout gets a fresh window. Gates are judged again;
    if the cause remains (fix devices or relax the spec first) the rollout pauses again."""
    status = _next_status(state.status, "resume")
    if state.wave < 0:
        status = Status.PENDING
    return replace(state, status=status, wave_started_at=now, soak_started_at=None,
                   reasons=state.reasons + (why,))


def operator_pause(why: str) -> Pause:
    """A pause asked for by a human, applied with :func:`apply` like any other."""
    return Pause("operator", None, None, why)


def operator_abort(state: RolloutState, why: str) -> Abort:
    """An abort asked for by a human: revert every device moved so far."""
    return Abort("operator", None, None, why, dict(state.previous))


def late_joiners(spec: RolloutSpec, state: RolloutState,
                 all_matching_devices: Iterable[str]) -> list[str]:
    """Devices matching the selector now that the rollout has not planned, in canary order.

    An aborting or finished-by-abort rollout takes none: its version is being withdrawn.
    Pass the result to :func:`admit_late_joiners`.
    """
    if state.status in (Status.ABORTING, Status.ABORTED, Status.FAILED):
        return []
    new = set(all_matching_devices) - set(state.assignment)
    salt = _salt(spec)
    return sorted(new, key=lambda d: hashlib.sha256(f"{salt}\0{d}".encode()).hexdigest())


def admit_late_joiners(state: RolloutState, devices: Collection[str]) -> RolloutState:
    """Assign late joiners to the last wave (or the current one once COMPLETED); the next
    :func:`decide` sends them as soon as that wave has started."""
    new = [d for d in devices if d not in state.assignment]
    if not new or state.status in (Status.ABORTING, Status.ABORTED, Status.FAILED):
        return state
    wave = state.wave if state.status is Status.COMPLETED else state.wave_count - 1
    # a device skipped for its class that now reports the version's class is a target again
    return replace(state, assignment={**state.assignment, **{d: wave for d in new}},
                   skipped={d: c for d, c in state.skipped.items() if d not in new},
                   reasons=state.reasons + (f"{len(new)} late joiners assigned to wave {wave + 1}",))


def skip_devices(state: RolloutState, devices: Mapping[str, str]) -> RolloutState:
    """Record ``devices`` (device -> its class) as skipped: of another class than the version.

    A planned device not sent the version yet leaves the plan; one already sent it stays (its
    agent has decided). Skips are recorded while the rollout takes devices (not once it
    aborts or ended by an abort)."""
    if state.status in (Status.ABORTING, Status.ABORTED, Status.FAILED):
        return state
    new = {d: c for d, c in devices.items()
           if d not in state.previous and state.skipped.get(d) != c}
    if not new:
        return state
    return replace(state,
                   assignment={d: w for d, w in state.assignment.items() if d not in new},
                   skipped={**state.skipped, **new},
                   reasons=state.reasons + (
                       f"{len(new)} devices skipped: of another class than "
                       f"{state.device_class!r}",))


def release_devices(state: RolloutState, devices: Collection[str], why: str) -> RolloutState:
    """Drop devices another rollout took over (see ``check_conflict``); they are not reverted."""
    gone = set(devices) & set(state.assignment)
    if not gone:
        return state
    return replace(state,
                   assignment={d: w for d, w in state.assignment.items() if d not in gone},
                   previous={d: p for d, p in state.previous.items() if d not in gone},
                   reasons=state.reasons + (f"{len(gone)} devices released: {why}",))


def target_of(spec: RolloutSpec) -> Version:
    """What the rollout moves its devices to: its model version, or its agent version."""
    if spec.kind == "agent":
        return AgentVersion(spec.agent_version)
    return ModelVersion(spec.model, spec.version)


S = Status
# fmt: off
TABLE: dict[tuple[Status, str], Status] = {
    (S.PENDING,   "advance"):  S.RUNNING,
    (S.RUNNING,   "advance"):  S.RUNNING,
    (S.SOAKING,   "advance"):  S.RUNNING,
    (S.COMPLETED, "advance"):  S.COMPLETED,   # late joiners after completion
    (S.PENDING,   "complete"): S.COMPLETED,   # every planned device was released
    (S.RUNNING,   "complete"): S.COMPLETED,
    (S.SOAKING,   "complete"): S.COMPLETED,
    (S.ABORTING,  "complete"): S.ABORTED,
    (S.PENDING,   "pause"):    S.PAUSED,
    (S.RUNNING,   "pause"):    S.PAUSED,
    (S.SOAKING,   "pause"):    S.PAUSED,
    (S.PAUSED,    "resume"):   S.RUNNING,
    (S.PENDING,   "abort"):    S.ABORTING,
    (S.RUNNING,   "abort"):    S.ABORTING,
    (S.SOAKING,   "abort"):    S.ABORTING,
    (S.PAUSED,    "abort"):    S.ABORTING,
    (S.ABORTING,  "fail"):     S.FAILED,
}
# fmt: on


def _next_status(status: Status, kind: str) -> Status:
    try:
        return TABLE[(status, kind)]
    except KeyError:
        raise TransitionError(f"cannot {kind} a rollout that is {status.value}") from None


def _judge_wave(spec: RolloutSpec, state: RolloutState, observations: Observations,
                now: float) -> Decision:
    """Fail fast on a definite gate failure, pass only after reporting, soak and every gate."""
    label = f"wave {state.wave + 1}/{state.wave_count}"
    results = evaluate_gates(spec.gates, state.sent_in(state.wave), observations, target_of(spec))
    for result in results:
        if result.failed:
            return _gate_failed(spec, state, result)
    unsent = state.unsent_in(state.wave)
    if unsent:
        return _advance(state.wave, unsent, observations)
    timeout = spec.wave_timeout_seconds
    reporting = next(r for r in results if r.name == REPORTING)
    if not reporting.passed:
        started = state.wave_started_at if state.wave_started_at is not None else now
        if now - started >= timeout:
            return _gate_failed(spec, state, replace(reporting, pending=False, detail=(
                f"{reporting.detail} after the {timeout:g}s wave timeout")))
        return Wait(f"{label}: {reporting.detail}, need {reporting.threshold:.0%}")
    # The soak runs from the moment the wave reports, so slow downloads do not eat into it.
    soak_start = state.soak_started_at
    soaked = now - soak_start if state.status is Status.SOAKING and soak_start is not None else 0.0
    soak = spec.soak_for(state.wave)
    if soaked < soak:
        return Wait(f"{label}: soaking, {soak - soaked:.0f}s left", soaking=True)
    pending = [r for r in results if r.pending]
    if pending:
        if soaked >= max(soak, timeout):
            first = pending[0]
            return _gate_failed(spec, state, replace(first, pending=False, detail=(
                f"still pending after the wave timeout: {first.detail}")))
        names = ", ".join(f"{r.name} ({r.detail})" for r in pending)
        return Wait(f"{label}: waiting for evidence: {names}", soaking=True)
    return _next_wave(spec, state, observations, after=state.wave)


def _next_wave(spec: RolloutSpec, state: RolloutState, observations: Observations,
               after: int) -> Decision:
    for wave in range(after + 1, state.wave_count):
        devices = state.unsent_in(wave)
        if devices:
            return _advance(wave, devices, observations)
    return Complete(f"all {state.wave_count} waves passed: {len(state.previous)} devices "
                    f"run {target_of(spec)}")


def _advance(wave: int, devices: list[str], observations: Observations) -> Advance:
    previous = {d: (o.active if (o := observations.get(d)) else None) for d in devices}
    return Advance(wave, tuple(devices), previous)


def _gate_failed(spec: RolloutSpec, state: RolloutState, result: GateResult) -> Pause | Abort:
    if spec.on_gate_failure == "abort":
        return Abort(result.name, result.value, result.threshold, result.detail,
                     dict(state.previous))
    return Pause(result.name, result.value, result.threshold, result.detail)


def _judge_revert(spec: RolloutSpec, state: RolloutState, observations: Observations,
                  now: float) -> Decision:
    """Done when every moved device reports its previous model; FAILED past the wave timeout."""
    unconfirmed = sorted(d for d, prev in state.previous.items()
                         if (o := observations.get(d)) is None or o.active != prev)
    total = len(state.previous)
    if not unconfirmed:
        what = "agents" if spec.kind == "agent" else "models"
        return Complete(f"abort complete: {total} devices back on their previous {what}")
    started = state.abort_started_at if state.abort_started_at is not None else now
    if now - started >= spec.wave_timeout_seconds:
        return Fail(f"abort incomplete after {spec.wave_timeout_seconds:g}s: "
                    f"{len(unconfirmed)} of {total} devices did not confirm",
                    tuple(unconfirmed))
    return Wait(f"reverting: {total - len(unconfirmed)} of {total} devices confirmed")


def _gate_text(d: Pause | Abort) -> str:
    if d.value is None or d.threshold is None:
        return f"{d.gate}: {d.detail}"
    return f"{d.gate} {d.value:g} vs threshold {d.threshold:g}: {d.detail}"


def _salt(spec: RolloutSpec) -> str:
    return f"agent:{spec.agent_version}" if spec.kind == "agent" else f"{spec.model}:{spec.version}"


def _mv_out(mv: Version | None) -> dict[str, Any] | None:
    if isinstance(mv, AgentVersion):
        return {"agent": mv.version}
    return None if mv is None else {"model": mv.model, "version": mv.version}


def _mv_in(v: Any) -> Version | None:
    if v is None:
        return None
    if "agent" in v:
        return AgentVersion(str(v["agent"]))
    return ModelVersion(str(v["model"]), int(v["version"]))


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)
