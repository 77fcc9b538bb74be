"""Request bodies bounded in size and JSON nesting before any handler parses them.

One ASGI layer in front of every route (``create_app`` installs it):

- a body larger than its bound is answered 413 without being read further: a multipart upload
  (``multipart/form-data``: a model version's artifact and manifest) up to ``max_upload``
  bytes, any other body up to ``max_body`` bytes. A ``Content-Length`` over the bound is refused
  before a byte is read; a chunked body is counted as it arrives. A body refused while the
  client is still sending it is drained and discarded for a bounded time and size after the
  answer is written (a lingering close, as web servers do): closing a socket with unread data
  makes the kernel send a reset, which can discard the answer before the client has read it.
- a body that is not a multipart upload is read whole (it is small, by the bound above) and
  refused with 422 if its arrays/objects nest deeper than ``max_depth``: the JSON parser
  recurses, and a document nested thousands deep would exhaust the stack in the handler.
  Multipart uploads stream through untouched; the manifest they carry is checked by the same
  rule where it is parsed (``controller/models/api.py``).

The bounds are in ``controller/rest.py`` (``MAX_JSON_BODY``, ``MAX_JSON_DEPTH``,
``MAX_FORM_OVERHEAD``) and documented in docs/security.md.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from controller.rest import json_too_deep

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# a refused body still arriving is read and discarded at most this long and this far, so the
# client reads the answer before the connection closes; a client sending on is cut off after
DRAIN_SECONDS = 5.0
DRAIN_BYTES = 256 * 1024 * 1024


class BodyTooLarge(Exception):
    """Raised inside ``receive`` when a streamed body passes its bound."""


class BodyLimits:
    def __init__(self, app: ASGIApp, *, max_body: int, max_upload: int, max_depth: int) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload = max_upload
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        upload = content_type.startswith("multipart/form-data")
        bound = self.max_upload if upload else self.max_body
        declared = headers.get(b"content-length", b"").decode("latin-1").strip()
        if declared:
            if not declared.isdigit():
                await _refuse(send, 400, "Content-Length is not a number")
                return
            if len(declared) > 18 or int(declared) > bound:
                await _refuse(send, 413, _too_large(bound, upload))
                return
        if upload:
            await self._stream(scope, receive, send, bound)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > bound:
                await _refuse(send, 413, _too_large(bound, upload),
                              drain=receive if message.get("more_body", False) else None)
                return
            if not message.get("more_body", False):
                break
        if json_too_deep(bytes(body), self.max_depth):
            await _refuse(send, 422, f"request body nests deeper than {self.max_depth} levels "
                                     "of arrays/objects")
            return
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _stream(self, scope: Scope, receive: Receive, send: Send, bound: int) -> None:
        """Pass a multipart upload through, counting; past the bound the app's reading fails
        and whatever it would answer is replaced by 413."""
        seen = 0
        over = False
        started = False

        more = True

        async def counting() -> Message:
            nonlocal seen, over, more
            message = await receive()
            seen += len(message.get("body", b""))
            more = bool(message.get("more_body", False))
            if seen > bound:
                over = True
                raise BodyTooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if over:
                return  # the app's answer to a body cut short is replaced below
            started = True
            await send(message)

        try:
            await self.app(scope, counting, guarded)
        except Exception:
            if not over:  # BodyTooLarge, or what the app made of it
                raise
        if over and not started:
            await _refuse(send, 413, _too_large(bound, True), drain=receive if more else None)


def _too_large(bound: int, upload: bool) -> str:
    what = "an upload" if upload else "a request body (other than a multipart upload)"
    return f"request body too large: {what} may be at most {bound} bytes"


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # http.disconnect, when the client goes

    return replay


async def _refuse(send: Send, status: int, detail: str, *, drain: Receive | None = None) -> None:
    """Answer ``status`` and close. With ``drain`` (the request's body is still arriving) the
    whole answer is written first, then the rest of the body is read and discarded within
    ``DRAIN_SECONDS``/``DRAIN_BYTES`` before the response ends and the server closes."""
    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload, "more_body": drain is not None})
    if drain is None:
        return
    await _discard(drain)
    await send({"type": "http.response.body", "body": b""})


async def _discard(receive: Receive) -> None:
    deadline = time.monotonic() + DRAIN_SECONDS
    discarded = 0
    while discarded < DRAIN_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            message = await asyncio.wait_for(receive(), left)
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return
        discarded += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
