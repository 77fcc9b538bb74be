"""What the agent remembers about trust between restarts: ``{data_dir}/trust.json``.

* ``highest_counter`` and ``last_seal``: the highest seal counter it accepted and the fingerprint
  of that seal (:mod:`edgewise_wire.seal`), so a captured desired state is refused after a
  restart as before it;
* ``agent_counter`` and ``agent_seal``: the same for agent orders (``desired_agent``), kept apart:
  the controller draws both from one counter sequence, so a model desired state redelivered by
  the broker carries a counter below the agent order accepted since, and must still pass (and
  the other way round);
* ``key_sequence``, ``added`` and ``retired``: the last key update it applied
  (:mod:`edgewise_wire.key_update`), and the keys that update added to, or retired from, the
  ones ``agent.toml`` lists.

Written like the update journal (:func:`edge_agent.durable.replace_durably`: a temporary file,
fsync, rename, fsync of the directory), *before* the agent acts on what it accepted: after a
power cut the file holds the old state or the new one, and a counter is never forgotten once
acted upon. An unreadable file is not taken as "nothing accepted yet" (that would reopen every
replay): the agent refuses to start and says which file to look at.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge_agent.durable import replace_durably

log = logging.getLogger("edgewise.agent.trust")

FILE_NAME = "trust.json"


class TrustStateError(ValueError):
    """``trust.json`` exists but cannot be read; the agent refuses to start with it."""


@dataclass(frozen=True)
class TrustState:
    highest_counter: int = 0
    last_seal: str | None = None
    key_sequence: int = 0
    added: dict[str, str] = field(default_factory=dict)  # key id -> public PEM text
    retired: frozenset[str] = frozenset()
    agent_counter: int = 0  # the highest seal counter of an agent order accepted
    agent_seal: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"highest_counter": self.highest_counter, "last_seal": self.last_seal,
                "key_sequence": self.key_sequence, "added": dict(sorted(self.added.items())),
                "retired": sorted(self.retired), "agent_counter": self.agent_counter,
                "agent_seal": self.agent_seal}

    @classmethod
    def from_dict(cls, d: Any) -> TrustState:
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        highest, seq = d.get("highest_counter", 0), d.get("key_sequence", 0)
        last, added, retired = d.get("last_seal"), d.get("added", {}), d.get("retired", [])
        agent_counter, agent_seal = d.get("agent_counter", 0), d.get("agent_seal")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                   for n in (highest, seq, agent_counter)):
            raise ValueError("'highest_counter', 'key_sequence' and 'agent_counter' must be "
                             "integers >= 0")
        if not all(s is None or isinstance(s, str) for s in (last, agent_seal)):
            raise ValueError("'last_seal' and 'agent_seal' must be strings or null")
        if not (isinstance(added, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in added.items())):
            raise ValueError("'added' must map key ids to PEM text")
        if not (isinstance(retired, list) and all(isinstance(k, str) for k in retired)):
            raise ValueError("'retired' must be a list of key ids")
        return cls(highest, last, seq, dict(added), frozenset(retired), agent_counter,
                   agent_seal)


class TrustStore:
    """The file and the state it holds; :meth:`save` is blocking (run it on the small-I/O pool)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME
        self.state = self._load()

    def _load(self) -> TrustState:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return TrustState()
        except OSError as exc:
            raise TrustStateError(f"{self.path} cannot be read: {exc}") from None
        try:
            return TrustState.from_dict(json.loads(text))
        except ValueError as exc:
            raise TrustStateError(
                f"{self.path} is damaged ({exc}); the agent will not guess which signed desired "
                "states it accepted. Restore it from a backup, or delete it to accept the "
                "controller's next desired state as if the device were new") from None

    def save(self, state: TrustState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_durably(self.path, json.dumps(state.to_dict(), indent=1))
        self.state = state

    def with_seal(self, counter: int, fingerprint: str) -> TrustState:
        return replace(self.state, highest_counter=counter, last_seal=fingerprint)
