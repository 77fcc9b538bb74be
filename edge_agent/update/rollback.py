"""Where a rollback points the slot pointer. Pure: slots are named by their model refs.

The destination is the step's ``previous``: what served when the update began. Which slot holds
it depends on how far the update got: before the switch (an activation that failed its smoke
test) the pointer still names it as active; after the switch it is the previous slot.
"""

from __future__ import annotations

from enum import Enum

from edgewise_wire.message_base import ModelRef


class RollbackTo(Enum):
    # nothing served when the update began: serve nothing again
    NOTHING = "nothing"
    # the pointer never switched: point at the active slot again, the older previous slot stays
    ACTIVE_SLOT = "active_slot"
    # after a switch: point at the previous slot; the slot rolled back from is not kept
    PREVIOUS_SLOT = "previous_slot"
    # no slot holds it any more: the rollback cannot happen
    GONE = "gone"


def rollback_to(destination: ModelRef | None, active: ModelRef | None,
                previous: ModelRef | None) -> RollbackTo:
    if destination is None:
        return RollbackTo.NOTHING
    if active is not None and active == destination:
        return RollbackTo.ACTIVE_SLOT
    if previous is not None and previous == destination:
        return RollbackTo.PREVIOUS_SLOT
    return RollbackTo.GONE
