"""Carries out the test hook :class:`~edge_agent.update.pause.UpdatePause`: where it says, the
update parks. Parking writes ``{data_dir}/paused-in`` (the state name) for the test to wait on,
logs it, and from then on the update does not advance and takes no more chunks; predictions are
still served. Without a hook nothing ever parks.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edge_agent.update.pause import UpdatePause
from edge_agent.update.state_machine import UpdateState

log = logging.getLogger("edgewise.agent.update")


class Parking:
    def __init__(self, pause: UpdatePause | None, marker: Path, device_id: str) -> None:
        self.pause = pause
        self.marker = marker
        self.device_id = device_id
        self.parked = False

    def at_step(self, state: UpdateState) -> bool:
        """Park if the hook names ``state`` (called right after its step is journaled)."""
        if self.pause is None or not self.pause.parks_at_step(state):
            return False
        self.park(state.value)
        return True

    def due_after_chunks(self, received: int) -> bool:
        """Whether the hook parks the download now that ``received`` chunks are written."""
        return self.pause is not None and self.pause.parks_after_chunks(received)

    def park(self, state: str, detail: str = "") -> None:
        self.parked = True
        self.marker.write_text(state)
        log.warning("%s: test hook: paused in %s%s", self.device_id, state, detail)
