"""The agent's model-update lifecycle as a transition table: no I/O, no clock, no threads.

The adapters (MQTT, disk slots, runtime) do the work of each state and feed the outcome back as
an :class:`Event`; :func:`advance` answers with the next :class:`UpdateStep`, which the caller
persists *before* starting the new state's work. After a crash the agent loads the last step and
calls :func:`on_restart`, which counts the attempt and gives up (a ``FAILURE``) past the cap, so
a crash-looping device rolls back instead of spinning. ``docs/agent-lifecycle.md`` is generated
from :data:`TABLE` (see :mod:`edge_agent.update.diagram`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from edgewise_wire.errors import SchemaError
from edgewise_wire.message_base import ModelRef
from edgewise_wire.update_states import REST_STATES, UpdateState
from edgewise_wire.validation import get_dict, get_float, get_str

MAX_ATTEMPTS_PER_STATE = 3


class Event(Enum):
    NEW_TARGET = "new_target"  # a verified desired state names a model other than the running one
    SUCCESS = "success"  # the state's work is done
    FAILURE = "failure"  # fatal for this state (also: RETRY or crash past the attempt cap)
    RETRY = "retry"  # transient: try again (with backoff, in the adapter)
    ABORTED = "aborted"  # the controller withdrew this update
    ROLLBACK_ORDER = "rollback_order"  # a signed order to go back to the previous version
    REJECTED = "rejected"  # a desired state failed the device's checks before any work began
    DEACTIVATE = "deactivate"  # a (signed) desired state naming no model: unload and serve none


S, E = UpdateState, Event
# fmt: off
TABLE: dict[tuple[UpdateState, Event], UpdateState] = {
    (S.IDLE,         E.NEW_TARGET):     S.DOWNLOADING,

    (S.DOWNLOADING,  E.SUCCESS):        S.VERIFYING,
    (S.DOWNLOADING,  E.RETRY):          S.DOWNLOADING,
    (S.DOWNLOADING,  E.FAILURE):        S.FAILED,
    (S.DOWNLOADING,  E.ABORTED):        S.IDLE,
    (S.DOWNLOADING,  E.NEW_TARGET):     S.DOWNLOADING,

    (S.VERIFYING,    E.SUCCESS):        S.STAGED,
    (S.VERIFYING,    E.RETRY):          S.DOWNLOADING,
    (S.VERIFYING,    E.FAILURE):        S.FAILED,
    (S.VERIFYING,    E.ABORTED):        S.IDLE,
    (S.VERIFYING,    E.NEW_TARGET):     S.DOWNLOADING,

    (S.STAGED,       E.SUCCESS):        S.ACTIVATING,
    (S.STAGED,       E.RETRY):          S.DOWNLOADING,
    (S.STAGED,       E.FAILURE):        S.FAILED,
    (S.STAGED,       E.ABORTED):        S.IDLE,
    (S.STAGED,       E.NEW_TARGET):     S.DOWNLOADING,

    (S.ACTIVATING,   E.SUCCESS):        S.PROBATION,
    (S.ACTIVATING,   E.FAILURE):        S.ROLLING_BACK,
    (S.ACTIVATING,   E.ABORTED):        S.ROLLING_BACK,

    (S.PROBATION,    E.SUCCESS):        S.ACTIVE,
    (S.PROBATION,    E.FAILURE):        S.ROLLING_BACK,
    (S.PROBATION,    E.ABORTED):        S.ROLLING_BACK,

    (S.ACTIVE,       E.NEW_TARGET):     S.DOWNLOADING,
    (S.ACTIVE,       E.ROLLBACK_ORDER): S.ROLLING_BACK,
    (S.ACTIVE,       E.REJECTED):       S.FAILED,
    (S.ACTIVE,       E.DEACTIVATE):     S.IDLE,

    (S.IDLE,         E.REJECTED):       S.FAILED,
    (S.IDLE,         E.DEACTIVATE):     S.IDLE,

    (S.ROLLING_BACK, E.SUCCESS):        S.ROLLED_BACK,
    (S.ROLLING_BACK, E.RETRY):          S.ROLLING_BACK,
    (S.ROLLING_BACK, E.FAILURE):        S.FAILED,

    (S.ROLLED_BACK,  E.NEW_TARGET):     S.DOWNLOADING,
    (S.ROLLED_BACK,  E.REJECTED):       S.FAILED,
    (S.ROLLED_BACK,  E.ABORTED):        S.IDLE,
    (S.ROLLED_BACK,  E.DEACTIVATE):     S.IDLE,

    (S.FAILED,       E.NEW_TARGET):     S.DOWNLOADING,
    (S.FAILED,       E.REJECTED):       S.FAILED,
    (S.FAILED,       E.ABORTED):        S.IDLE,
    (S.FAILED,       E.DEACTIVATE):     S.IDLE,
}
# fmt: on
del S, E

STATE_MEANING: dict[UpdateState, str] = {
    UpdateState.IDLE: "No update in flight; the active slot (if any) serves.",
    UpdateState.DOWNLOADING: "Fetching the target artifact chunk by chunk into the standby slot.",
    UpdateState.VERIFYING: "Checking the assembled file: length, sha256, signature, version.",
    UpdateState.STAGED: "A verified artifact waits in the standby slot; the old slot still serves.",
    UpdateState.ACTIVATING: "Switching slots, loading the new model and running the manifest's smoke test.",
    UpdateState.PROBATION: "The new model serves while a health window watches errors and latency.",
    UpdateState.ACTIVE: "The new model is committed; the old slot is kept for an instant rollback.",
    UpdateState.FAILED: "The update stopped; the slot that served before it still serves.",
    UpdateState.ROLLING_BACK: "Switching back to the previous slot and loading it.",
    UpdateState.ROLLED_BACK: "The previous model serves again; the target was abandoned.",
}

EVENT_MEANING: dict[Event, str] = {
    Event.NEW_TARGET: "The desired state names a new, verified target (it supersedes any "
                      "target not yet activated).",
    Event.SUCCESS: "The state's work finished.",
    Event.FAILURE: "A fatal error, or a RETRY or crash past the per-state attempt cap.",
    Event.RETRY: "A transient error: do the work again (the adapter backs off).",
    Event.ABORTED: "The controller withdrew the update (rollout aborted or desired changed); "
                   "at rest after a failure: the controller now desires the model that serves.",
    Event.ROLLBACK_ORDER: "A signed rollback order names the previous version.",
    Event.REJECTED: "A desired state failed the device's checks (signature, expiry, device "
                    "class, version, format, size) before any work began; nothing changes.",
    Event.DEACTIVATE: "A desired state naming no model (signed rollback order to version 0): "
                      "unload the model and serve none.",
}


class InvalidTransition(Exception):
    """An event that the table does not allow in the current state."""

    def __init__(self, state: UpdateState, event: Event) -> None:
        allowed = sorted(e.name for (s, e) in TABLE if s is state)
        super().__init__(
            f"no transition from {state.value} on {event.name} (allowed: {', '.join(allowed)})"
        )
        self.state = state
        self.event = event


def next_state(state: UpdateState, event: Event) -> UpdateState:
    try:
        return TABLE[(state, event)]
    except KeyError:
        raise InvalidTransition(state, event) from None


@dataclass(frozen=True)
class UpdateStep:
    """What the agent persists before each step does its work.

    ``previous`` is what served when this update began: the rollback destination. ``attempts``
    counts, per working state, how often this update entered it (retries and restarts included),
    stored as ``(state, count)`` pairs in :class:`UpdateState` order so the value stays immutable.
    """

    state: UpdateState
    target: ModelRef | None
    previous: ModelRef | None
    entered_at: float
    attempts: tuple[tuple[UpdateState, int], ...] = ()
    last_error: str | None = None

    def attempts_in(self, state: UpdateState) -> int:
        return dict(self.attempts).get(state, 0)

    @property
    def running(self) -> ModelRef | None:
        """The model the active slot should hold in this state (the new one from PROBATION on)."""
        if self.state in (UpdateState.PROBATION, UpdateState.ACTIVE):
            return self.target
        return self.previous

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "target": self.target.to_dict() if self.target else None,
            "previous": self.previous.to_dict() if self.previous else None,
            "entered_at": self.entered_at,
            "attempts": {s.value: n for s, n in self.attempts},
            "last_error": self.last_error,
        }

    @classmethod
    def from_dict(cls, d: Any, ctx: str = "update_step") -> UpdateStep:
        if not isinstance(d, dict):
            raise SchemaError(f"{ctx} must be an object")
        state = _state(get_str(d, "state", ctx), f"{ctx}.state")
        attempts: dict[UpdateState, int] = {}
        for name, n in (get_dict(d, "attempts", ctx, optional=True) or {}).items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise SchemaError(f"{ctx}.attempts.{name} must be a non-negative integer")
            attempts[_state(name, f"{ctx}.attempts")] = n
        target, previous = d.get("target"), d.get("previous")
        return cls(
            state=state,
            target=ModelRef.from_dict(target, f"{ctx}.target") if target is not None else None,
            previous=(ModelRef.from_dict(previous, f"{ctx}.previous")
                      if previous is not None else None),
            entered_at=get_float(d, "entered_at", ctx),
            attempts=_ordered(attempts),
            last_error=get_str(d, "last_error", ctx, optional=True),
        )


def _state(name: str, ctx: str) -> UpdateState:
    try:
        return UpdateState(name)
    except ValueError:
        raise SchemaError(f"{ctx} {name!r} is not an update state") from None


def _ordered(attempts: Mapping[UpdateState, int]) -> tuple[tuple[UpdateState, int], ...]:
    return tuple((s, attempts[s]) for s in UpdateState if attempts.get(s))


def _count_entry(attempts: Mapping[UpdateState, int], state: UpdateState) -> tuple[tuple[UpdateState, int], ...]:
    if state in REST_STATES:
        return _ordered(attempts)
    return _ordered({**attempts, state: attempts.get(state, 0) + 1})


def idle(*, now: float, running: ModelRef | None = None) -> UpdateStep:
    """The first step of an agent with nothing persisted: ``running`` is what its slot holds."""
    return UpdateStep(UpdateState.IDLE, target=None, previous=running, entered_at=now)


def advance(
    step: UpdateStep,
    event: Event,
    *,
    now: float,
    target: ModelRef | None = None,
    error: str | None = None,
    max_attempts_per_state: int = MAX_ATTEMPTS_PER_STATE,
) -> UpdateStep:
    """The step after ``event``; ``target`` is required with NEW_TARGET and refused otherwise.

    A RETRY that would enter a state more than ``max_attempts_per_state`` times is a FAILURE.
    Raises :class:`InvalidTransition` for an event the table does not allow here.
    """
    if (event is Event.NEW_TARGET) != (target is not None):
        raise ValueError("advance() takes a target with NEW_TARGET and only with NEW_TARGET")
    nxt = next_state(step.state, event)
    if event is Event.NEW_TARGET:
        return UpdateStep(nxt, target=target, previous=step.running, entered_at=now,
                          attempts=_count_entry({}, nxt))
    if event is Event.REJECTED or (event is Event.ABORTED and step.state in REST_STATES):
        # nothing was started: what serves stays the rollback destination of the next update
        return UpdateStep(nxt, target=None, previous=step.running, entered_at=now,
                          last_error=error if event is Event.REJECTED else None)
    if event is Event.DEACTIVATE:
        return UpdateStep(nxt, target=None, previous=None, entered_at=now)
    if event is Event.RETRY and step.attempts_in(nxt) >= max_attempts_per_state:
        gave_up = (f"gave up after {max_attempts_per_state} attempts in {nxt.value}"
                   + (f": {error}" if error else ""))
        return advance(step, Event.FAILURE, now=now, error=gave_up,
                       max_attempts_per_state=max_attempts_per_state)
    if error is None and event in (Event.FAILURE, Event.ABORTED):
        error = f"{event.value} in {step.state.value}"
    return replace(
        step,
        state=nxt,
        entered_at=now,
        attempts=_count_entry(dict(step.attempts), nxt),
        last_error=error if error is not None else step.last_error,
    )


def on_restart(
    step: UpdateStep, *, now: float, max_attempts_per_state: int = MAX_ATTEMPTS_PER_STATE
) -> tuple[UpdateStep, str]:
    """Account for a restart found in ``step``: the step to persist and resume, and why.

    A restart in a working state counts as one more attempt at it; past the cap it is a FAILURE
    (so ACTIVATING and PROBATION roll back, earlier states fail with the old slot serving, and a
    crash-looping rollback stops at FAILED). What to do in the resulting state is
    :data:`edge_agent.update.resume.RESUME_MAP`.
    """
    if step.state in REST_STATES:
        return step, f"restarted in {step.state.value}: at rest, nothing to resume"
    attempt = step.attempts_in(step.state) + 1
    counted = replace(step, attempts=_ordered({**dict(step.attempts), step.state: attempt}))
    if attempt > max_attempts_per_state:
        why = (f"crashed in {step.state.value} with all {max_attempts_per_state} "
               "attempts used")
        failed = advance(counted, Event.FAILURE, now=now, error=why,
                         max_attempts_per_state=max_attempts_per_state)
        return failed, f"{why}: giving up, now {failed.state.value}"
    return (replace(counted, entered_at=now),
            f"restarted in {step.state.value}: attempt {attempt} of {max_attempts_per_state}")
