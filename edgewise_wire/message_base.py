"""What every message of the wire contract shares: the :class:`Message` base every type derives
from, :class:`ModelRef` (a model version several messages name), the size bounds
:func:`edgewise_wire.codec.decode` checks before parsing, and the wall clock a message takes
its ``ts`` from when the sender gives none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from edgewise_wire.errors import SchemaError
from edgewise_wire.validation import get_int, get_sha256, get_str

# Size bounds, checked before a payload is parsed. A manifest with smoke tests and a reference
# profile is a few tens of KiB; a telemetry batch of 500 records about 100 KiB.
MAX_CONTROL_BYTES = 1024 * 1024
MAX_TELEMETRY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ModelRef:
    model: str
    version: int
    sha256: str

    @classmethod
    def from_dict(cls, d: Any, ctx: str) -> ModelRef:
        if not isinstance(d, dict):
            raise SchemaError(f"{ctx} must be an object")
        return cls(get_str(d, "model", ctx, max_len=128), get_int(d, "version", ctx, minimum=0),
                   get_sha256(d, "sha256", ctx))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "sha256": self.sha256}

    def __str__(self) -> str:
        return f"{self.model}:{self.version}"


M = TypeVar("M", bound="Message")


class Message:
    TYPE: ClassVar[str]
    MAX_BYTES: ClassVar[int] = MAX_CONTROL_BYTES

    def body(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_body(cls: type[M], d: dict[str, Any]) -> M:
        raise NotImplementedError


def now() -> float:
    return time.time()
