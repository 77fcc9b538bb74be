"""The agent's update states (``edge_agent.protocol.UPDATE_STATES``) as the controller reads them.

One place for the rules every view and the rollout gates share (issue 4 added ``staged``,
``probation``, ``rolling_back`` and ``rolled_back``; docs/agent-lifecycle.md):

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
from typing import Any

IN_PROGRESS_STATES = frozenset({"downloading", "verifying", "staged", "activating", "probation",
                                "rolling_back"})
AT_REST_STATES = frozenset({"idle", "active", "failed", "rolled_back"})
# states that may mean "gave up on the version it was asked for" (see gave_up_on)
FAILED_UPDATE_STATES = frozenset({"failed", "rolled_back"})
SETTLED_STATES = frozenset({"active", "rolled_back"})


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
