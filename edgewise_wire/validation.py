"""Small typed accessors used by the message decoders.

Each raises :class:`SchemaError` naming the field and what was expected, so a dropped message
is logged with a reason an operator can act on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from edgewise_wire.errors import SchemaError

T = TypeVar("T")

_MISSING = object()

# every integer on the wire must fit the databases' BIGINT and SQLite's INTEGER
MAX_INT = 2**63 - 1

# content addresses end up in file names and topics: only lower-case hex is let through
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def _where(obj: Mapping[str, Any], key: str, ctx: str) -> str:
    return f"{ctx}.{key}" if ctx else key


def get_str(obj: Mapping[str, Any], key: str, ctx: str = "", *, optional: bool = False,
            max_len: int = 4096) -> Any:
    value = obj.get(key, _MISSING)
    if value is _MISSING or value is None:
        if optional:
            return None
        raise SchemaError(f"missing field {_where(obj, key, ctx)!r}")
    if not isinstance(value, str):
        raise SchemaError(f"field {_where(obj, key, ctx)!r} must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise SchemaError(f"field {_where(obj, key, ctx)!r} is longer than {max_len} characters")
    return value


def get_int(obj: Mapping[str, Any], key: str, ctx: str = "", *, optional: bool = False,
            minimum: int | None = None) -> Any:
    value = obj.get(key, _MISSING)
    if value is _MISSING or value is None:
        if optional:
            return None
        raise SchemaError(f"missing field {_where(obj, key, ctx)!r}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError(f"field {_where(obj, key, ctx)!r} must be an integer, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise SchemaError(f"field {_where(obj, key, ctx)!r} must be >= {minimum}, got {value}")
    if value > MAX_INT:
        raise SchemaError(f"field {_where(obj, key, ctx)!r} exceeds the 64-bit range")
    return value


def get_float(obj: Mapping[str, Any], key: str, ctx: str = "", *, optional: bool = False) -> Any:
    value = obj.get(key, _MISSING)
    if value is _MISSING or value is None:
        if optional:
            return None
        raise SchemaError(f"missing field {_where(obj, key, ctx)!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(f"field {_where(obj, key, ctx)!r} must be a number, got {type(value).__name__}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite:
        raise SchemaError(f"field {_where(obj, key, ctx)!r} must be finite")
    return float(value)


def get_bool(obj: Mapping[str, Any], key: str, ctx: str = "") -> bool:
    value = obj.get(key, _MISSING)
    if not isinstance(value, bool):
        raise SchemaError(f"field {_where(obj, key, ctx)!r} must be true or false")
    return value


def get_dict(obj: Mapping[str, Any], key: str, ctx: str = "", *, optional: bool = False) -> Any:
    value = obj.get(key, _MISSING)
    if value is _MISSING or value is None:
        if optional:
            return None
        raise SchemaError(f"missing field {_where(obj, key, ctx)!r}")
    if not isinstance(value, dict):
        raise SchemaError(f"field {_where(obj, key, ctx)!r} must be an object")
    return value


def get_list(obj: Mapping[str, Any], key: str, ctx: str = "", *, optional: bool = False,
             max_items: int = 100_000) -> Any:
    value = obj.get(key, _MISSING)
    if value is _MISSING or value is None:
        if optional:
            return None
        raise SchemaError(f"missing field {_where(obj, key, ctx)!r}")
    if not isinstance(value, list):
        raise SchemaError(f"field {_where(obj, key, ctx)!r} must be a list")
    if len(value) > max_items:
        raise SchemaError(f"field {_where(obj, key, ctx)!r} has more than {max_items} items")
    return value


# free-form parts of a message (a manifest's source, parity, reference profile) nest at most this
# deep: they are signed as canonical JSON, which recurses, and a real one nests about 5 deep
MAX_FREE_FORM_DEPTH = 16


def get_free_form(obj: Mapping[str, Any], key: str, ctx: str = "", *,
                  max_depth: int = MAX_FREE_FORM_DEPTH) -> dict[str, Any]:
    """An optional free-form object (default ``{}``) that can still be signed and sent:
    nested at most ``max_depth`` levels, numbers finite, keys strings. Checked without
    recursion, so any depth is refused rather than crashing the check."""
    value = get_dict(obj, key, ctx, optional=True) or {}
    where = _where(obj, key, ctx)
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
            if not all(isinstance(k, str) for k in item):
                raise SchemaError(f"field {where!r} has a key that is not a string")
        elif isinstance(item, list):
            children = item
        else:
            if isinstance(item, float) and not math.isfinite(item):
                raise SchemaError(f"field {where!r} holds a number that is not finite")
            continue
        if depth > max_depth:
            raise SchemaError(f"field {where!r} nests deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)
    return dict(value)


def get_str_map(obj: Mapping[str, Any], key: str, ctx: str = "") -> dict[str, str]:
    value = get_dict(obj, key, ctx, optional=True) or {}
    for k, v in value.items():
        if not isinstance(v, str):
            raise SchemaError(f"field {_where(obj, key, ctx)}.{k} must be a string")
    return dict(value)


def get_sha256(obj: Mapping[str, Any], key: str, ctx: str = "") -> str:
    value = get_str(obj, key, ctx, max_len=64)
    if not SHA256_HEX.fullmatch(value):
        raise SchemaError(f"field {_where(obj, key, ctx)!r} must be 64 lower-case hex digits")
    return str(value)
