"""Two rollouts must not fight over a device.

A device has one desired model (``ew/v1/dev/{id}/desired`` carries a single model), so any
overlap between an active rollout's targets and a new one's is a conflict, whatever the models.
The new rollout wins only with a strictly higher priority; equal priority means "a human
decides", so the start is refused with the names and devices needed to decide.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from controller.errors import ConflictError as _ControllerConflict
from controller.rollouts.spec import RolloutSpec

_SHOWN = 10


class ConflictError(_ControllerConflict):
    """The new rollout overlaps active ones of equal or higher priority.

    ``conflicts`` maps each blocking rollout's name to the shared devices.
    """

    def __init__(self, new_name: str, conflicts: Mapping[str, tuple[str, ...]],
                 priorities: Mapping[str, int]) -> None:
        self.new_name = new_name
        self.conflicts = dict(conflicts)
        parts = [f"rollout {name!r} (priority {priorities[name]}) on {len(devs)} devices: "
                 f"{_list(devs)}" for name, devs in self.conflicts.items()]
        highest = max(priorities[name] for name in self.conflicts)
        super().__init__(f"rollout {new_name!r} overlaps " + "; ".join(parts)
                         + f"; give it a priority above {highest} to take these devices over, "
                           "or narrow its selector")


@dataclass(frozen=True)
class Preemption:
    """Devices the new rollout takes over, by the name of the rollout that loses them.

    Empty when nothing overlaps. The controller calls ``release_devices`` on each loser.
    """

    moves: Mapping[str, tuple[str, ...]]

    @property
    def devices(self) -> set[str]:
        return {d for devs in self.moves.values() for d in devs}


def check_conflict(new_spec: RolloutSpec, new_targets: Collection[str],
                   active_rollouts: Sequence[tuple[RolloutSpec, Collection[str]]]) -> Preemption:
    """Refuse (``ConflictError``) unless every overlapping rollout has a lower priority."""
    wanted = set(new_targets)
    moves: dict[str, tuple[str, ...]] = {}
    blocking: dict[str, tuple[str, ...]] = {}
    priorities: dict[str, int] = {}
    for spec, targets in active_rollouts:
        shared = tuple(sorted(wanted & set(targets)))
        if not shared:
            continue
        priorities[spec.display_name] = spec.priority
        if new_spec.priority > spec.priority:
            moves[spec.display_name] = shared
        else:
            blocking[spec.display_name] = shared
    if blocking:
        raise ConflictError(new_spec.display_name, blocking, priorities)
    return Preemption(moves)


def _list(devices: Sequence[str]) -> str:
    shown = ", ".join(devices[:_SHOWN])
    more = len(devices) - _SHOWN
    return shown + (f" and {more} more" if more > 0 else "")
