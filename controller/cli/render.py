"""Small text helpers the views share: colour only when asked, times as "5m ago", versions as
``name:version``, shares as percentages."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from edgewise_wire.update_states import IN_PROGRESS_STATES, UpdateState

# update states by colour: in progress yellow (probation serves but is not committed yet),
# rolled_back magenta (the old model serves, the update did not), idle plain
STATE_COLOURS: dict[str, str | None] = {
    **{state.value: "yellow" for state in IN_PROGRESS_STATES},
    UpdateState.ACTIVE.value: "green", UpdateState.FAILED.value: "red",
    UpdateState.ROLLED_BACK.value: "magenta", UpdateState.IDLE.value: None}


def paint(text: str, colour: bool, **style: Any) -> str:
    return click.style(text, **style) if colour else text


def is_tty() -> bool:
    return sys.stdout.isatty()


def ago(ts: float | None, now: float) -> str:
    if not ts:
        return "never"
    seconds = max(0.0, now - ts)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"


def version_text(model: str | None, version: int | None) -> str:
    return f"{model}:{version}" if model else "-"


def pct(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "-"


def span(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:.0f}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"


def labels_text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def when(ts: float, seconds: bool = True) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M",
                         time.localtime(ts))
