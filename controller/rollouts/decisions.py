"""What the rollout engine tells the controller to do: a small closed set of frozen values.

The controller acts on a decision (send desired states, send reverts, write the audit log with
:func:`decision_to_dict`) and then hands it to ``engine.apply`` for the next state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from controller.fleet.versions import Version


@dataclass(frozen=True)
class Wait:
    """Nothing to do now; ``why`` is for humans, ``soaking`` tells RUNNING from SOAKING."""

    why: str
    soaking: bool = False
    kind: ClassVar[str] = "wait"


@dataclass(frozen=True)
class Advance:
    """Send the rollout's version to ``devices`` as wave ``wave`` (0-based).

    ``previous`` is what each device ran before, recorded so an abort can put it back. When
    ``wave`` is the current wave this is a top-up for late joiners and the wave clock keeps
    running.
    """

    wave: int
    devices: tuple[str, ...]
    previous: Mapping[str, Version | None]
    kind: ClassVar[str] = "advance"


@dataclass(frozen=True)
class Complete:
    """All waves passed (or, while ABORTING, every revert is confirmed)."""

    why: str
    kind: ClassVar[str] = "complete"


@dataclass(frozen=True)
class Pause:
    """A gate failed and the policy is to stop and ask a human (``gate="operator"`` if asked)."""

    gate: str
    value: float | None
    threshold: float | None
    detail: str = ""
    kind: ClassVar[str] = "pause"


@dataclass(frozen=True)
class Abort:
    """Stop and put every moved device back: ``revert`` maps device -> what it ran before (a
    model version, or an agent version in an agent rollout)."""

    gate: str
    value: float | None
    threshold: float | None
    detail: str
    revert: Mapping[str, Version | None]
    kind: ClassVar[str] = "abort"


@dataclass(frozen=True)
class Fail:
    """An abort timed out with devices that never confirmed their revert."""

    why: str
    unconfirmed: tuple[str, ...]
    kind: ClassVar[str] = "fail"


Decision = Wait | Advance | Complete | Pause | Abort | Fail


def decision_to_dict(decision: Decision) -> dict[str, Any]:
    """A JSON-ready record of a decision for the audit log and the API."""
    out: dict[str, Any] = {"kind": decision.kind}
    for f in fields(decision):
        value = getattr(decision, f.name)
        if isinstance(value, Mapping):
            value = {d: None if mv is None else str(mv) for d, mv in value.items()}
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out
