"""Which of the selected devices a class-specific model version goes to.

A model version may name the one device class it is built for (its manifest's
``device_class``); an agent of another class refuses it (reason ``other_class``). Devices report
their class, so the controller does not send such a version to a device *known* to be of
another class: the device is skipped, with the reason, and counts neither as a target nor as a
failure. A device whose class is unknown (an agent too old to report it, or one that never
connected) is targeted as before: its agent decides. A version that names no class goes to
every selected device.

Pure: no database, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# the agent's own word for the refusal (edge_agent.desired_gate), used for the skip as well
OTHER_CLASS = "other_class"
_SHOWN = 5


def of_other_class(version_class: str | None, device_class: str | None) -> bool:
    """True when the version is for one class and the device is known to be of another."""
    return version_class is not None and bool(device_class) and device_class != version_class


def skip_reason(version_class: str, device_class: str) -> str:
    """The reason shown for one skipped device."""
    return f"{OTHER_CLASS}: the device is {device_class!r}, the version is for {version_class!r}"


@dataclass(frozen=True)
class ClassSplit:
    """The selected devices, split: ``targets`` get the version, ``skipped`` (device -> its
    class) are known to be of another class than ``version_class``."""

    version_class: str | None
    targets: tuple[str, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)

    def refusal(self, version: str) -> str | None:
        """A one-line reason to refuse sending ``version`` at all: every selected device is of
        another class. None when some device is left (or none was selected: said elsewhere)."""
        if self.targets or not self.skipped or self.version_class is None:
            return None
        classes = sorted(set(self.skipped.values()))
        return (f"{version} is for device class {self.version_class!r}, and every one of the "
                f"{len(self.skipped)} selected devices is of another class "
                f"({', '.join(map(repr, classes))}): nothing to send")


def split_by_class(devices: Iterable[str], classes: Mapping[str, str | None],
                   version_class: str | None) -> ClassSplit:
    """Split ``devices`` by their known class (``classes``: device -> class, None or missing
    while unknown) against the version's ``version_class`` (None: any device)."""
    targets: list[str] = []
    skipped: dict[str, str] = {}
    for device in sorted(set(devices)):
        device_class = classes.get(device)
        if device_class and of_other_class(version_class, device_class):
            skipped[device] = device_class
        else:
            targets.append(device)
    return ClassSplit(version_class, tuple(targets), skipped)


def skipped_view(version_class: str | None, skipped: Mapping[str, str]) -> list[dict[str, str]]:
    """The skipped devices as the rollout and deployment views list them, by device id."""
    if version_class is None:
        return []
    return [{"device_id": d, "device_class": c, "reason": skip_reason(version_class, c)}
            for d, c in sorted(skipped.items())]


def skipped_text(version_class: str | None, skipped: Mapping[str, str]) -> str:
    """One line for logs and the audit log: how many were skipped, and a few of them."""
    if not skipped or version_class is None:
        return ""
    shown = ", ".join(f"{d} ({c})" for d, c in sorted(skipped.items())[:_SHOWN])
    more = len(skipped) - _SHOWN
    return (f"{len(skipped)} devices of another class skipped (the version is for "
            f"{version_class!r}): {shown}" + (f" and {more} more" if more > 0 else ""))
