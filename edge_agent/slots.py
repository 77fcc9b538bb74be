"""The model slots on disk: content-addressed files and one pointer switched by atomic rename.

Layout under the agent's data directory::

    models/{sha256}.onnx|.tflite   verified artifacts, never modified in place
    active.json                    {"manifest", "file", "deployment_id", "previous": {...} | null}

A slot is a verified file plus its manifest. ``active`` serves; ``previous`` is the model that
served before the last switch, kept for an instant rollback (no download). A staged artifact is a
verified file in ``models/`` that the pointer does not name yet. Switching writes the whole
pointer to ``active.json.tmp``, fsyncs it and renames it over ``active.json`` (then fsyncs the
directory), so after a power cut the pointer is either the old one or the new one, never a mix.
An ``active.json`` from before slots and signed updates (no ``previous``) reads as a pointer
with no previous slot.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.durable import replace_durably
from edge_agent.runtime import file_sha256
from edgewise_wire import Manifest, ModelRef
from edgewise_wire.errors import SchemaError

log = logging.getLogger("edgewise.agent.slots")


class SlotError(Exception):
    """The pointer or a slot's file cannot be trusted (unreadable, malformed, wrong sha256)."""


@dataclass(frozen=True)
class Slot:
    manifest: Manifest
    file: str  # name under models/
    deployment_id: str | None = None

    @property
    def ref(self) -> ModelRef:
        m = self.manifest
        return ModelRef(m.model, m.version, m.artifact.sha256)

    def to_dict(self) -> dict[str, Any]:
        return {"manifest": self.manifest.to_dict(), "file": self.file,
                "deployment_id": self.deployment_id}

    @classmethod
    def from_dict(cls, d: Any, ctx: str) -> Slot:
        if not isinstance(d, dict) or not isinstance(d.get("file"), str):
            raise SchemaError(f"{ctx} must be an object with a 'file'")
        name = d["file"]
        if not name or "/" in name or name.startswith("."):
            raise SchemaError(f"{ctx}.file {name!r} is not a plain file name")
        deployment = d.get("deployment_id")
        return cls(Manifest.from_dict(d.get("manifest"), f"{ctx}.manifest"), name,
                   deployment if isinstance(deployment, str) else None)


@dataclass(frozen=True)
class SlotPointer:
    active: Slot | None = None
    previous: Slot | None = None


def artifact_name(manifest: Manifest) -> str:
    suffix = "onnx" if manifest.format == "onnx" else "tflite"
    return f"{manifest.artifact.sha256}.{suffix}"


class SlotStore:
    def __init__(self, data_dir: Path) -> None:
        self.models_dir = data_dir / "models"
        self.pointer_file = data_dir / "active.json"

    def path_of(self, slot: Slot) -> Path:
        return self.models_dir / slot.file

    def staged_path(self, manifest: Manifest) -> Path:
        return self.models_dir / artifact_name(manifest)

    def load(self) -> SlotPointer:
        """The pointer as last switched; an empty one if there never was a model."""
        try:
            raw = json.loads(self.pointer_file.read_text())
        except FileNotFoundError:
            return SlotPointer()
        except (OSError, ValueError, RecursionError) as exc:
            raise SlotError(f"{self.pointer_file.name} is unreadable: {exc}") from None
        if not isinstance(raw, dict):
            raise SlotError(f"{self.pointer_file.name} is not a JSON object")
        try:
            active = Slot.from_dict(raw, "active") if raw.get("manifest") is not None else None
            previous = (Slot.from_dict(raw["previous"], "previous")
                        if raw.get("previous") is not None else None)
        except SchemaError as exc:
            raise SlotError(f"{self.pointer_file.name} is malformed: {exc}") from None
        return SlotPointer(active, previous)

    def verify(self, slot: Slot) -> Path:
        """The slot's file, if it is there and still matches its sha256 (else SlotError)."""
        path = self.path_of(slot)
        try:
            digest = file_sha256(path)
        except FileNotFoundError:
            raise SlotError(f"{slot.ref} is missing its file {path.name}") from None
        if digest != slot.manifest.artifact.sha256:
            raise SlotError(f"{slot.ref}: {path.name} no longer matches its sha256")
        return path

    def has_verified(self, manifest: Manifest) -> bool:
        path = self.staged_path(manifest)
        try:
            return (path.stat().st_size == manifest.artifact.size
                    and file_sha256(path) == manifest.artifact.sha256)
        except FileNotFoundError:
            return False

    def switch(self, pointer: SlotPointer) -> None:
        """Make ``pointer`` the one on disk, atomically and durably."""
        if pointer.active is None:
            record: dict[str, Any] = {"manifest": None, "file": None, "deployment_id": None}
        else:
            record = pointer.active.to_dict()
        record["previous"] = pointer.previous.to_dict() if pointer.previous else None
        self.pointer_file.parent.mkdir(parents=True, exist_ok=True)
        # dumps uses the C encoder; dump(f) does not
        replace_durably(self.pointer_file, json.dumps(record))

    def prune(self, keep: set[str]) -> None:
        """Remove model files no slot (nor a staged update) refers to."""
        if not self.models_dir.exists():
            return
        for path in self.models_dir.iterdir():
            if path.name not in keep:
                log.info("removing unused model file %s", path.name)
                path.unlink(missing_ok=True)

