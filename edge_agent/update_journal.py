"""The update journal: the last :class:`UpdateStep` and the desired state it works on, on disk.

Written (atomically, durably) *before* each step's work starts, so that after a crash the agent
knows exactly where it was and which signed desired state it was carrying out: it does not need
the broker to tell it again. ``update.json`` under the agent's data directory::

    {"step": UpdateStep.to_dict(), "desired": <the desired message as received, or null>}

A journal that cannot be read (a torn write cannot happen, but a disk can fail) is moved aside
and the agent starts at rest with whatever its slot pointer names.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from edge_agent.durable import replace_durably
from edge_agent.update import UpdateStep
from edgewise_wire import Desired, ProtocolError, decode, encode
from edgewise_wire.errors import SchemaError

log = logging.getLogger("edgewise.agent.journal")


class UpdateJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._written = 0
        # the desired state last encoded: an update journals the same one at every step, and
        # its manifest (reference profile, smoke tests, chunk hashes) can be 100 KB of JSON
        self._encoded: tuple[Desired, str] | None = None

    def save(self, step: UpdateStep, desired: Desired | None, sequence: int | None = None) -> None:
        """Replace the journal atomically and durably. Saves run in threads: with ``sequence``
        given, a save older than the last one written is skipped instead of overwriting it."""
        with self._lock:
            if sequence is not None:
                if sequence < self._written:
                    return
                self._written = sequence
            replace_durably(self.path, f'{{"step":{json.dumps(step.to_dict())},'
                                       f'"desired":{self._desired_json(desired)}}}')

    def _desired_json(self, desired: Desired | None) -> str:
        if desired is None:
            return "null"
        cached = self._encoded
        if cached is not None and cached[0] is desired:
            return cached[1]
        text = encode(desired).decode()
        self._encoded = (desired, text)
        return text

    def load(self) -> tuple[UpdateStep, Desired | None] | None:
        try:
            raw = json.loads(self.path.read_text())
            if not isinstance(raw, dict):
                raise SchemaError("not a JSON object")
            step = UpdateStep.from_dict(raw.get("step"))
            desired_raw = raw.get("desired")
            desired = (decode(json.dumps(desired_raw).encode(), Desired)
                       if desired_raw is not None else None)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError, ProtocolError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt")
            os.replace(self.path, aside)
            log.error("update journal %s unreadable (%s); moved to %s, starting at rest",
                      self.path, exc, aside.name)
            return None
        return step, desired
