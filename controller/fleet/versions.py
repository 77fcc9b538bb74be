"""A model version as the fleet sees it: the ``(model, version)`` a device runs, and how operators
write one (``iris:2``). Pure."""

from __future__ import annotations

from typing import NamedTuple

from controller.errors import ValidationError


class ModelVersion(NamedTuple):
    """A model and version a device runs; what an abort restores (a device runs one model)."""

    model: str
    version: int

    def __str__(self) -> str:
        return f"{self.model}:{self.version}"


class AgentVersion(NamedTuple):
    """An agent version a device runs (its reported ``agent_version``); what an agent rollout
    sends and what its abort restores. A one-field tuple: never equal to a ``ModelVersion``."""

    version: str

    def __str__(self) -> str:
        return f"agent {self.version}"


# what a rollout moves a device to (and back from): a model version, or an agent version
Version = ModelVersion | AgentVersion


def parse_model_ref(text: str) -> tuple[str, int | None]:
    """``iris`` or ``iris:2`` -> (name, version or None); ValidationError otherwise."""
    name, sep, version = text.partition(":")
    if not name or (sep and not version.isdigit()) or len(version) > 9:
        raise ValidationError(f"model {text!r} must be NAME or NAME:VERSION, e.g. iris:2")
    return name, int(version) if sep else None

