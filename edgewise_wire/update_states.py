"""The agent's update states: one enum both sides use, and how the controller reads them.

The agent's transition table (:mod:`edge_agent.update.state_machine`) moves between these states
and reports them in ``Reported.state``; the controller's views and rollout gates read them with
the rules below (docs/agent-lifecycle.md):

* in progress: an update is under way; the device still serves what it ran before, or (in
  ``probation``) the new model, not committed yet;
* done with a version: the device reports it active and is at rest on it: ``active``
  (committed), or ``rolled_back`` onto it (a revert or a downgrade by rollback order ends
  there when the version was still in the device's previous slot);
* gave up on a version: ``failed``, or ``rolled_back`` to something other than the version
  it was asked to run (its probation failed, or the activation did).

Versions are ``(model, version)`` pairs (``ModelVersion`` is one); pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any


class UpdateState(StrEnum):
    """Where a device's model update stands. Members compare equal to the names on the wire
    (``UpdateState.ACTIVE == "active"``)."""

    IDLE = "idle"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    STAGED = "staged"
    ACTIVATING = "activating"
    PROBATION = "probation"  # the new model serves, not committed yet
    ACTIVE = "active"  # committed
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"  # the previous model serves again


U = UpdateState
# at rest: nothing is in flight; the agent serves its active slot (if any) and waits
REST_STATES = frozenset({U.IDLE, U.ACTIVE, U.FAILED, U.ROLLED_BACK})
IN_PROGRESS_STATES = frozenset(set(UpdateState) - REST_STATES)
# states that may mean "gave up on the version it was asked for" (see gave_up_on)
FAILED_UPDATE_STATES = frozenset({U.FAILED, U.ROLLED_BACK})
SETTLED_STATES = frozenset({U.ACTIVE, U.ROLLED_BACK})
# the names on the wire, in lifecycle order
UPDATE_STATE_NAMES = tuple(state.value for state in UpdateState)


def _same(a: Sequence[Any] | None, b: Sequence[Any] | None) -> bool:
    return (None if a is None else tuple(a)) == (None if b is None else tuple(b))


def runs(state: str | None, active: Sequence[Any] | None, wanted: Sequence[Any] | None) -> bool:
    """The device is at rest on ``wanted``: committed, or rolled back onto it."""
    return wanted is not None and state in SETTLED_STATES and _same(active, wanted)


def gave_up_on(state: str | None, active: Sequence[Any] | None,
               wanted: Sequence[Any] | None) -> bool:
    """The update to ``wanted`` ended without it: ``failed``, or rolled back to another model.

    Callers that know what the device last *tried* (its reported target) should also check it
    is ``wanted``: a failure of an older version is not a failure of this one.
    """
    if state == "failed":
        return True
    return state == "rolled_back" and not _same(active, wanted)
