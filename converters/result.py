"""What a converter hands back: the artifact, its draft manifest, and a report for humans."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgewise_wire.manifest import Manifest


@dataclass(frozen=True)
class ConversionResult:
    """A converted model ready for the registry.

    ``manifest.version`` is 0: the registry assigns the version when it stores ``artifact``.
    ``report`` holds what an operator wants to see after a conversion (seconds taken, artifact
    size, parity figures) and is not sent to devices.
    """

    artifact: bytes
    manifest: Manifest
    report: dict[str, Any] = field(default_factory=dict)
