"""Paging a list the views built in memory (a page of ``limit`` items after ``offset``). Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def page(items: Sequence[Any], limit: int | None, offset: int) -> list[Any]:
    """``items[offset:offset+limit]`` (``limit`` None: to the end)."""
    return list(items[offset:] if limit is None else items[offset:offset + limit])

