"""Requests one side sends the other when it needs something, and their replies: the agent
asking for artifact chunks again (``art_req``), the controller asking for a device's recent
log lines (``logs_req``) and the agent's answer (``logs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from edgewise_wire.errors import SchemaError
from edgewise_wire.message_base import Message
from edgewise_wire.validation import get_float, get_int, get_list, get_sha256, get_str


@dataclass(frozen=True)
class ArtifactRequest(Message):
    """Agent -> controller: please (re)publish these chunk ranges ([start, end), end exclusive)."""

    TYPE: ClassVar[str] = "art_req"
    sha256: str
    ranges: tuple[tuple[int, int], ...]

    def body(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "ranges": [list(r) for r in self.ranges]}

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> ArtifactRequest:
        sha = get_sha256(d, "sha256")
        ranges = []
        for r in get_list(d, "ranges", max_items=10_000):
            if (not isinstance(r, list) or len(r) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) for x in r)
                    or not 0 <= r[0] < r[1]):
                raise SchemaError(f"range {r!r} must be [start, end) with 0 <= start < end")
            ranges.append((r[0], r[1]))
        return cls(sha, tuple(ranges))


MAX_LOG_LINES = 1000


@dataclass(frozen=True)
class LogsRequest(Message):
    """Controller -> agent: send the log lines of your ring logged at or after ``since_ts``
    (the newest ``max_lines`` of them). ``request_id`` comes back in the reply."""

    TYPE: ClassVar[str] = "logs_req"
    request_id: str
    since_ts: float = 0.0
    max_lines: int = 200

    def body(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "since_ts": self.since_ts,
                "max_lines": self.max_lines}

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> LogsRequest:
        return cls(get_str(d, "request_id", max_len=64), get_float(d, "since_ts"),
                   min(get_int(d, "max_lines", minimum=0), MAX_LOG_LINES))


@dataclass(frozen=True)
class LogsReply(Message):
    """Agent -> controller: recent log lines, oldest first, each ``{ts, level, logger,
    message}``; ``dropped``: lines the ring has pushed out since the agent started."""

    TYPE: ClassVar[str] = "logs"
    request_id: str
    lines: list[dict[str, Any]]
    dropped: int = 0

    def body(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "lines": self.lines, "dropped": self.dropped}

    @classmethod
    def from_body(cls, d: dict[str, Any]) -> LogsReply:
        lines = get_list(d, "lines", max_items=MAX_LOG_LINES)
        for i, line in enumerate(lines):
            ctx = f"lines[{i}]"
            if not isinstance(line, dict):
                raise SchemaError(f"{ctx} must be an object")
            get_float(line, "ts", ctx)
            get_str(line, "level", ctx, max_len=16)
            get_str(line, "logger", ctx, max_len=128)
            get_str(line, "message", ctx, max_len=4096)
        return cls(get_str(d, "request_id", max_len=64), lines,
                   get_int(d, "dropped", minimum=0))
