"""What the agent does with a desired state: the decision, without the doing.

Pure: no I/O, no asyncio, no clock. The updater checks a desired state against the device's
trust rules (:class:`~edge_agent.desired_gate.DesiredGate`), describes where it stands
(:class:`Situation`) and asks :func:`plan` for one :class:`Command`; it then carries the command
out (journal, pointer, runtime, chunks). Every command starts with at most one journaled
:class:`~edge_agent.update.state_machine.Event`, given by :func:`event_of`, and the table allows
that event in the state the command is planned for.

The rules, in order (protocol.md 4.2 lists them for operators):

- a desired state the checks refused is counted and reported; at rest it is journaled as
  REJECTED, in flight the update goes on;
- the target already in flight again (the retained message after a reconnect): nothing;
- before activation (downloading, verifying, staged), a new target replaces the one in flight,
  and a desired state naming what serves (a revert) or no model withdraws the update;
- activating, probation and rolling back finish first (a withdrawn version ends probation
  early); the desired state is applied at rest;
- at rest: no model unloads; the model that serves is confirmed (a failure at rest settles);
  the previous slot's model after a commit is an instant rollback; the same failed deployment
  again is not retried; anything else is installed.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.update.state_machine import REST_STATES, Event, UpdateState, UpdateStep
from edgewise_wire.message_base import ModelRef

# The states whose work can be dropped without touching what serves: nothing was switched yet.
PRE_ACTIVATION = frozenset({UpdateState.DOWNLOADING, UpdateState.VERIFYING, UpdateState.STAGED})
# At rest after an update that did not end on its target.
_UNSUCCESSFUL = frozenset({UpdateState.FAILED, UpdateState.ROLLED_BACK})


@dataclass(frozen=True)
class DesiredRef:
    """A desired state that passed the device's checks, as far as deciding needs it."""

    deployment_id: str
    target: ModelRef | None  # None: run no model


@dataclass(frozen=True)
class Refused:
    """A desired state the device's checks refused (signature, expiry, version, size ...)."""

    deployment_id: str
    reason: str


Offer = DesiredRef | Refused


@dataclass(frozen=True)
class Situation:
    step: UpdateStep  # where the update stands (as journaled)
    running: ModelRef | None  # what serves now
    previous: ModelRef | None  # the pointer's previous slot: on disk, verified
    carried: DesiredRef | None  # the desired state the step carries out


# -- commands --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ignore:
    """Nothing to do; ``why`` is for the log."""

    why: str


@dataclass(frozen=True)
class Reject:
    """Count and report the refusal. ``at_rest``: journal it as a REJECTED step carrying the
    refused desired state; otherwise the update in flight goes on and only last_error says it."""

    reason: str
    at_rest: bool


@dataclass(frozen=True)
class Install:
    """At rest: a new update to ``target`` (NEW_TARGET), downloaded unless it is on disk."""

    target: ModelRef


@dataclass(frozen=True)
class Replace:
    """Before activation: drop the work in flight (and its partial download) and update to
    ``target`` instead (NEW_TARGET)."""

    target: ModelRef


@dataclass(frozen=True)
class Unload:
    """At rest: serve no model (DEACTIVATE); the model that served becomes the previous slot."""


@dataclass(frozen=True)
class Confirm:
    """The desired state names the model that serves: carry it. ``settle``: the device is at rest
    after a failure or a rollback, and this says nothing is wrong: back to rest (ABORTED),
    without an error."""

    settle: bool


@dataclass(frozen=True)
class RollBack:
    """After a commit: back to the previous slot's model (ROLLBACK_ORDER), served from disk."""

    to: ModelRef


@dataclass(frozen=True)
class Defer:
    """Activating, probation, rolling back: keep the desired state until the update is at rest.
    ``abort_probation``: the version on probation was withdrawn, so its window ends now."""

    abort_probation: bool


@dataclass(frozen=True)
class Withdraw:
    """Before activation: drop the work in flight (ABORTED: back to idle, the model that served
    still serves), then carry out ``then``, planned for idle."""

    then: Ignore | Unload | Confirm


Command = Ignore | Reject | Install | Replace | Unload | Confirm | RollBack | Defer | Withdraw


def event_of(command: Command) -> Event | None:
    """The event the command journals first (Withdraw: the ABORTED before its ``then``)."""
    match command:
        case Reject(at_rest=True):
            return Event.REJECTED
        case Install() | Replace():
            return Event.NEW_TARGET
        case Unload():
            return Event.DEACTIVATE
        case Confirm(settle=True) | Withdraw():
            return Event.ABORTED
        case RollBack():
            return Event.ROLLBACK_ORDER
        case _:
            return None


# -- the decision ----------------------------------------------------------------------------


def plan(situation: Situation, offer: Offer) -> Command:
    """The one command that carries out ``offer`` from ``situation``."""
    state = situation.step.state
    at_rest = state in REST_STATES
    if isinstance(offer, Refused):
        return Reject(offer.reason, at_rest=at_rest)
    wanted, target = offer.target, situation.step.target
    if wanted is not None and target is not None and not at_rest \
            and wanted.sha256 == target.sha256:
        return Ignore("the retained desired state again (a reconnect): the update goes on")
    if at_rest:
        return _at_rest(state, situation, offer)
    if state in PRE_ACTIVATION:
        running = situation.running
        if wanted is not None and (running is None or wanted.sha256 != running.sha256):
            return Replace(wanted)  # a newer target replaces this one
        # back to what serves (a rollout's revert), or to no model
        then = _at_rest(UpdateState.IDLE, situation, offer)
        assert isinstance(then, Ignore | Unload | Confirm)  # no other outcome from idle here
        return Withdraw(then)
    # activating, probation, rolling back: the same target returned above, so a desired state
    # arriving in probation withdraws the version on probation
    return Defer(abort_probation=state is UpdateState.PROBATION)


def _at_rest(state: UpdateState, situation: Situation, offer: DesiredRef) -> Command:
    wanted, running = offer.target, situation.running
    if wanted is None:
        if running is None and state is UpdateState.IDLE:
            return Ignore("no model is desired and none serves (the retained message again)")
        return Unload()
    if running is not None and running.sha256 == wanted.sha256:
        return Confirm(settle=settles(state, wanted, running))
    previous = situation.previous
    if state is UpdateState.ACTIVE and previous is not None and previous.sha256 == wanted.sha256:
        return RollBack(previous)
    carried = situation.carried
    if state in _UNSUCCESSFUL and carried is not None \
            and carried.deployment_id == offer.deployment_id and carried.target is not None \
            and carried.target.sha256 == wanted.sha256:
        return Ignore("the same failed deployment again (a reconnect): not retried in a loop")
    return Install(wanted)


def settles(state: UpdateState, desired: ModelRef | None, running: ModelRef | None) -> bool:
    """At rest after a failure or a rollback, a desired state naming the model that serves (a
    rollout's revert, an ordered rollback) means nothing is wrong: back to rest, no error."""
    return state in _UNSUCCESSFUL and desired is not None and running is not None \
        and desired.sha256 == running.sha256


def recheck_on_resume(state: UpdateState) -> bool:
    """An update found in this state after a restart goes through the device's checks again
    before it resumes: nothing serves from it yet, and the device may have been off for longer
    than its manifest is valid (or its trusted keys changed)."""
    return state in PRE_ACTIVATION
