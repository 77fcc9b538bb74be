"""What every REST router shares: the API prefix, who made a call (for the audit log), paging and
time-window query parameters, the bounds on request bodies (size, JSON nesting), and running
blocking reads off the event loop.

Library errors become status codes in one place, ``controller/app/api.py``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Query, Request

from controller.storage import MAX_ID as MAX_ID

API = "/api/v1"
MAX_PAGE = 5000
MAX_OFFSET = 10_000_000

TOTAL_HEADER = "X-Total-Count"
PAGED: dict[int | str, dict[str, Any]] = {200: {"headers": {TOTAL_HEADER: {
    "description": "how many items match the filters in all (the body is one page)",
    "schema": {"type": "integer"}}}}}

Limit = Annotated[int | None, Query(ge=1, le=MAX_PAGE,
                                    description="page size (default: everything)")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")]
Window = Annotated[float, Query(ge=60, le=30 * 86400,
                                description="seconds back from now the figures cover")]
Buckets = Annotated[int, Query(ge=2, le=500, description="about how many points a series has")]
GroupBy = Annotated[str, Query(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9_./-]+$",
                               description="device label whose values form the groups")]

# Request bodies are bounded before anything parses them (controller/app/body_limits.py):
# a JSON body (or any body that is not a multipart upload) up to MAX_JSON_BODY bytes, a
# multipart upload up to the artifact limit plus MAX_FORM_OVERHEAD, and any JSON document
# (a body, an uploaded manifest) nested at most MAX_JSON_DEPTH arrays/objects deep. The largest
# real body is a deployment to many devices (100,000 ids of 64 characters is about 7 MB) or a
# manifest with its reference profile (far smaller, nested about 5 deep).
MAX_JSON_BODY = 8 * 1024 * 1024
MAX_FORM_OVERHEAD = 2 * 1024 * 1024
MAX_JSON_DEPTH = 32

_ACTOR_CHARS = re.compile(r"[^A-Za-z0-9_.@:+/ -]")
T = TypeVar("T")


# where the auth layer (controller/security/auth.py) leaves the name of the token a call was
# identified by, on the request's state
PRINCIPAL_STATE = "edgewise_principal"


def actor_of(request: Request,
             x_edgewise_actor: Annotated[str | None, Header()] = None) -> str:
    """Who made a call, for the audit log: ``operator:TOKEN_NAME``, the identity of the token
    the auth layer checked (``config:api_token`` for the configured one). The X-Edgewise-Actor
    header (the CLI sends ``user@host``) is only a client's claim: it never replaces the
    token's identity, and is recorded as ``operator:api (unverified: CLAIM)`` only when no
    token identified the call (an API with no tokens at all)."""
    principal = getattr(request.state, PRINCIPAL_STATE, None)
    if principal:
        return f"operator:{principal}"
    claim = _ACTOR_CHARS.sub("", x_edgewise_actor or "").strip()[:64]
    return f"operator:api (unverified: {claim})" if claim else "operator:api"


Actor = Annotated[str, Depends(actor_of)]


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking query in a worker thread: the event loop also drives the MQTT connection."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def json_too_deep(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the arrays and objects in ``data`` nest deeper than ``limit``, counted without
    parsing (brackets inside strings do not count): the check that runs before ``json.loads``, whose recursion a document nested thousands deep would
    exhaust. Works on any text; what is not JSON is left to the parser to refuse."""
    text = data.encode() if isinstance(data, str) else data
    opened = text.count(b"[") + text.count(b"{")
    if opened <= limit:  # cannot nest deeper than it opens (the common case, at C speed)
        return False
    depth = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D) and depth:
            depth -= 1
    return False
