"""Waiting for something to become true, instead of sleeping for a guessed time.

A test that waits polls a condition with a short interval and fails naming what it waited for;
the timeout is an upper bound for a slow machine, not how long a passing test takes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

Description = str | Callable[[], str]


def _fail(timeout: float, what: Description) -> AssertionError:
    detail = what() if callable(what) else what
    return AssertionError(f"timed out after {timeout:.1f} s waiting for {detail}")


def wait_for(predicate: Callable[[], Any], timeout: float, what: Description,
             interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _fail(timeout, what)
        time.sleep(interval)


async def wait_for_async(predicate: Callable[[], Any], timeout: float, what: Description,
                         interval: float = 0.05, in_thread: bool = False) -> Any:
    """The same on an event loop; ``in_thread`` runs a blocking ``predicate`` (a REST call, a
    query) off the loop so the agents or the controller on it keep running."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate) if in_thread else predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _fail(timeout, what)
        await asyncio.sleep(interval)


def holds_for(predicate: Callable[[], Any], seconds: float, what: str,
              interval: float = 0.05) -> None:
    """Check that ``predicate`` stays true for ``seconds``: for something that must not happen."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), what
        time.sleep(interval)
    assert predicate(), what
