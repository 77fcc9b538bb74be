"""The agent's recent log lines, kept in a bounded ring for ``edgewise device logs``.

Warnings and errors by default, the last ``capacity`` lines, oldest dropped first. Nothing is
written to disk; the ring is lost at a restart (the journal keeps the long history).

One handler per process (:class:`_Dispatch`, on the ``edgewise`` logger) feeds every attached
ring: a simulator's thousand agents share one process, and a handler each would format every
log line a thousand times. A ring with ``mentioning`` keeps only lines that name it (its
device id), so each agent keeps its own.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

MAX_LINE = 2000  # characters of one message kept (a traceback is cut)


class LogRing:
    def __init__(self, capacity: int, level: int = logging.WARNING, *,
                 mentioning: str = "") -> None:
        self.level = level
        self.mentioning = mentioning
        self._lines: deque[dict[str, Any]] = deque(maxlen=max(capacity, 1))
        self._lock = threading.Lock()
        self.dropped = 0  # lines pushed out of the ring

    def keep(self, line: dict[str, Any]) -> None:
        with self._lock:
            if len(self._lines) == self._lines.maxlen:
                self.dropped += 1
            self._lines.append(line)

    def tail(self, since_ts: float = 0.0, max_lines: int = 200) -> list[dict[str, Any]]:
        """The newest lines logged at or after ``since_ts``, oldest first."""
        with self._lock:
            lines = [line for line in self._lines if line["ts"] >= since_ts]
        return lines[-max_lines:] if max_lines > 0 else []

    def attach(self, logger: str = "edgewise") -> None:
        _dispatch(logger).add(self)

    def detach(self, logger: str = "edgewise") -> None:
        _dispatch(logger).remove(self)


class _Dispatch(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._rings: tuple[LogRing, ...] = ()
        self._changing = threading.Lock()

    def add(self, ring: LogRing) -> None:
        with self._changing:
            self._rings = (*self._rings, ring)

    def remove(self, ring: LogRing) -> None:
        with self._changing:
            self._rings = tuple(r for r in self._rings if r is not ring)

    def emit(self, record: logging.LogRecord) -> None:
        line: dict[str, Any] | None = None
        for ring in self._rings:  # a snapshot: attach and detach replace the tuple
            if record.levelno < ring.level:
                continue
            if line is None:
                line = _line(record)
            if ring.mentioning and ring.mentioning not in line["message"]:
                continue
            ring.keep(line)


def _line(record: logging.LogRecord) -> dict[str, Any]:
    try:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
    except Exception:  # a bad format string must not break logging
        message = str(record.msg)
    return {"ts": record.created, "level": record.levelname, "logger": record.name,
            "message": message[:MAX_LINE]}


_DISPATCH: dict[str, _Dispatch] = {}
_DISPATCH_LOCK = threading.Lock()


def _dispatch(logger: str) -> _Dispatch:
    with _DISPATCH_LOCK:
        handler = _DISPATCH.get(logger)
        if handler is None:
            handler = _DISPATCH[logger] = _Dispatch()
            logging.getLogger(logger).addHandler(handler)
        return handler
