"""The agent's recent log lines, kept in a bounded ring for ``edgewise device logs``.

A :class:`logging.Handler` on the ``edgewise`` logger: warnings and errors by default, the last
``capacity`` lines, oldest dropped first. Nothing is written to disk; the ring is lost at a
restart (the journal keeps the long history).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

MAX_LINE = 2000  # characters of one message kept (a traceback is cut)


class LogRing(logging.Handler):
    """``mentioning``: keep only lines that name it (the device id), so that agents sharing
    one process (the simulator) each keep their own."""

    def __init__(self, capacity: int, level: int = logging.WARNING, *,
                 mentioning: str = "") -> None:
        super().__init__(level)
        self.mentioning = mentioning
        self._lines: deque[dict[str, Any]] = deque(maxlen=max(capacity, 1))
        self._ring_lock = threading.Lock()
        self.dropped = 0  # lines pushed out of the ring

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        if self.mentioning and self.mentioning not in message:
            return
        line = {"ts": record.created, "level": record.levelname, "logger": record.name,
                "message": message[:MAX_LINE]}
        with self._ring_lock:
            if len(self._lines) == self._lines.maxlen:
                self.dropped += 1
            self._lines.append(line)

    def tail(self, since_ts: float = 0.0, max_lines: int = 200) -> list[dict[str, Any]]:
        """The newest lines logged at or after ``since_ts``, oldest first."""
        with self._ring_lock:
            lines = [line for line in self._lines if line["ts"] >= since_ts]
        return lines[-max_lines:] if max_lines > 0 else []
