"""The agent's memory of recent predictions, so that feedback can name one by its id.

Prediction ids are ``{boot_id}-{n}`` with ``n`` counting up from 0 for the life of the process.
One entry is kept per inference *call* (its first ``n``, its labels, the model and version), not
per row: a batch of a thousand rows costs one append, and the memory holds about ``capacity``
rows in a few lists instead of a dict entry and a string per row. The oldest calls are forgotten
once more than ``capacity`` rows are held.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from typing import Any

# (label, model, version) of one prediction
Remembered = tuple[Any, str, int]


class RecentPredictions:
    def __init__(self, boot_id: str, capacity: int) -> None:
        self.boot_id = boot_id
        self.capacity = capacity
        self._prefix = f"{boot_id}-"
        self._firsts: deque[int] = deque()
        # per call: its labels, model, version, and the probability of each label (or None)
        self._calls: deque[tuple[list[Any], str, int, Any]] = deque()
        self._rows = 0

    def __len__(self) -> int:
        return self._rows

    def remember(self, first: int, labels: list[Any], model: str, version: int,
                 confidences: Any = None) -> None:
        """The labels of one call whose predictions are numbered ``first``, ``first + 1``...;
        ``confidences`` (a sequence, one per label, kept as given) lets feedback score the log
        loss and Brier score."""
        self._firsts.append(first)
        self._calls.append((labels, model, version, confidences))
        self._rows += len(labels)
        while self._rows - len(self._calls[0][0]) >= self.capacity and len(self._calls) > 1:
            self._firsts.popleft()
            self._rows -= len(self._calls.popleft()[0])

    def get(self, prediction_id: str) -> Remembered | None:
        """What ``prediction_id`` predicted, or None if it is unknown or forgotten."""
        found = self.find(prediction_id)
        return found[0] if found is not None else None

    def find(self, prediction_id: str) -> tuple[Remembered, float | None] | None:
        """What ``prediction_id`` predicted and the probability the model gave it (None when the
        model gives none), or None if it is unknown or forgotten."""
        if not prediction_id.startswith(self._prefix):
            return None
        number = prediction_id[len(self._prefix):]
        if not number.isdigit() or (len(number) > 1 and number[0] == "0"):
            return None
        n = int(number)
        index = bisect_right(self._firsts, n) - 1
        if index < 0:
            return None
        labels, model, version, confidences = self._calls[index]
        offset = n - self._firsts[index]
        if offset >= len(labels):
            return None
        confidence = float(confidences[offset]) if confidences is not None else None
        return (labels[offset], model, version), confidence
