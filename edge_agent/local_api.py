"""A small localhost HTTP API for applications on the device: predict, feedback, health.

It runs on the agent's own event loop with asyncio streams: no web framework, so the agent
stays light (FastAPI and uvicorn would add about 25 MiB to a Pi's resident memory).

    POST /v1/predict   {"features": [5.1, 3.5, 1.4, 0.2]}            one row
                       {"features": [[...], [...]]}                   a batch
                       {"records": [{"age": 41, "colour": "red"}]}    named fields (a model
                       {"records": {"age": [41], "colour": ["red"]}}  with an input schema)
    POST /v1/feedback  {"prediction_id": "...", "label": 0}
    GET  /v1/health

Beside them, the Open Inference Protocol v2 (``/v2/...``, edge_agent/oip_v2.py) serves the
active model to standard clients such as ``tritonclient.http``.

Errors are JSON ``{"error": "..."}`` with 400 (not JSON), 404, 405, 411, 413, 422 (input that
does not match the model's schema) and 503 (no active model yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from edge_agent import oip_v2
from edge_agent.agent import EdgeAgent, NoActiveModel
from edge_agent.runtime import InvalidInput
from edgewise_wire.version import edgewise_version

log = logging.getLogger("edgewise.agent.http")

MAX_BODY = 4 * 1024 * 1024
MAX_HEADER_LINES = 100
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            411: "Length Required", 413: "Payload Too Large", 422: "Unprocessable Entity",
            500: "Internal Server Error", 503: "Service Unavailable"}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


Handler = Callable[[Any], Awaitable[Any] | Any]


class RawResponse:
    """A response whose body is already bytes (v2 binary tensors), with extra headers."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers


class LocalApi:
    def __init__(self, agent: EdgeAgent, host: str = "127.0.0.1", port: int = 8701) -> None:
        self.agent = agent
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._routes: dict[tuple[str, str], Callable[[Any], Any]] = {
            ("POST", "/v1/predict"): self._predict,
            ("POST", "/v1/feedback"): self._feedback,
            ("GET", "/v1/health"): self._health,
        }

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])  # port 0 asks for a free one
        log.info("local API on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # -- endpoints ---------------------------------------------------------------------------

    def _predict(self, body: Any) -> Any:
        if not isinstance(body, dict) or ("features" in body) == ("records" in body):
            raise HttpError(422, 'body must be an object with "features" (a row or a list of '
                                 'rows) or "records" (objects of named fields, or columns)')
        try:
            predictions = self.agent.predict(body["records"] if "records" in body
                                             else body["features"])
        except InvalidInput as exc:
            raise HttpError(422, str(exc)) from None
        except NoActiveModel as exc:
            raise HttpError(503, f"{exc}; try again once the controller has rolled a model out") from None
        return {"predictions": [asdict(p) for p in predictions]}

    def _feedback(self, body: Any) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("prediction_id"), str) \
                or "label" not in body:
            raise HttpError(422, 'body must be {"prediction_id": "...", "label": ...}')
        label = body["label"]
        if not isinstance(label, (int, float, str)) or isinstance(label, bool) or \
                (isinstance(label, float) and not math.isfinite(label)):
            raise HttpError(422, "label must be a finite number or a string")
        known = self.agent.feedback(body["prediction_id"], label)
        return {"known": known}

    def _health(self, body: Any) -> Any:
        status = self.agent.status()
        status["serving"] = self.agent.runtime is not None
        return status

    # -- Open Inference Protocol v2 ------------------------------------------------------------

    def _v2(self, method: str, path: str, raw: bytes | None, headers: dict[str, str]) -> Any:
        """One ``/v2`` request; raises oip_v2.V2Error for the error body."""
        r = oip_v2.route(method, path)
        runtime = self.agent.runtime
        manifest = runtime.manifest if runtime is not None else None
        if r.kind == "live":
            return {"live": True}
        if r.kind == "ready":
            if manifest is None:
                raise oip_v2.V2Error(503, "not ready: no active model yet")
            return {"ready": True}
        if r.kind == "server":
            return oip_v2.server_metadata(edgewise_version())
        manifest = oip_v2.check_model(r, manifest)
        if r.kind == "model":
            return oip_v2.model_metadata(manifest)
        if r.kind == "model_ready":
            return {"name": manifest.model, "ready": True}
        body, tail = oip_v2.split_body(raw or b"",
                                       headers.get("inference-header-content-length"))
        request = oip_v2.parse_infer(body, tail, manifest)
        try:
            predictions = self.agent.predict(request.features)
        except InvalidInput as exc:
            raise oip_v2.V2Error(400, str(exc)) from None
        except NoActiveModel as exc:
            raise oip_v2.V2Error(503, str(exc)) from None
        served = predictions[0] if predictions else None
        if served is not None and (served.model, served.version) != (manifest.model,
                                                                     manifest.version):
            raise oip_v2.V2Error(503, "the active model changed during the request; send it "
                                      "again")
        scores = [p.scores for p in predictions] if all(p.scores is not None
                                                        for p in predictions) else None
        response = oip_v2.infer_response(request, manifest, [p.label for p in predictions],
                                         scores,  # type: ignore[arg-type]
                                         [p.prediction_id for p in predictions])
        extra = {} if response.header_length is None else {
            "Inference-Header-Content-Length": str(response.header_length)}
        return RawResponse(200, response.body, extra)

    # -- HTTP/1.1, just enough ----------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                keep_alive = await self._one_request(reader, writer)
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one_request(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> bool:
        request_line = await reader.readline()
        if not request_line:
            return False
        keep_alive = True
        try:
            parts = request_line.decode("latin-1").split()
            if len(parts) != 3:
                raise HttpError(400, "malformed request line")
            method, target, version = parts
            headers = await self._headers(reader)
            keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
            raw = await self._raw_body(reader, method, headers)
            path = target.split("?")[0]
            if path == "/v2" or path.startswith("/v2/"):
                try:
                    result = self._v2(method, path, raw, headers)
                except oip_v2.V2Error as exc:
                    result = RawResponse(exc.status, json.dumps({"error": str(exc)}).encode(), {})
                status, payload = (result.status, result) if isinstance(result, RawResponse) \
                    else (200, result)
                await self._write(writer, status, payload, keep_alive)
                return keep_alive
            body = self._json(raw) if raw is not None else None
            handler = self._routes.get((method, path))
            if handler is None:
                known = [m for (m, p) in self._routes if p == target.split("?")[0]]
                if known:
                    raise HttpError(405, f"use {' or '.join(known)} on {target}")
                raise HttpError(404, f"no endpoint {target}; see /v1/predict, /v1/feedback, /v1/health")
            status, payload = 200, handler(body)
        except HttpError as exc:
            status, payload = exc.status, {"error": str(exc)}
            keep_alive = keep_alive and exc.status not in (400, 411, 413)
        except Exception as exc:  # a bug must answer 500, not kill the agent
            log.exception("local API request failed")
            status, payload = 500, {"error": f"internal error: {exc}"}
        await self._write(writer, status, payload, keep_alive)
        return keep_alive

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, status: int, payload: Any,
                     keep_alive: bool) -> None:
        extra = ""
        if isinstance(payload, RawResponse):
            data = payload.body
            extra = "".join(f"{k}: {v}\r\n" for k, v in payload.headers.items())
            content_type = "application/octet-stream" if payload.headers else "application/json"
        else:
            data = json.dumps(payload, allow_nan=False, default=str).encode()
            content_type = "application/json"
        writer.write(
            f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {content_type}\r\n"
            f"{extra}Content-Length: {len(data)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n".encode() + data)
        await writer.drain()

    @staticmethod
    async def _headers(reader: asyncio.StreamReader) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                return headers
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise HttpError(400, "malformed header line")
            headers[name.strip().lower()] = value.strip()
        raise HttpError(400, "too many header lines")

    @staticmethod
    async def _raw_body(reader: asyncio.StreamReader, method: str,
                        headers: dict[str, str]) -> bytes | None:
        if method != "POST":
            return None
        if "content-length" not in headers:
            raise HttpError(411, "POST needs a Content-Length header")
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise HttpError(400, "Content-Length is not a number") from None
        if length < 0 or length > MAX_BODY:
            raise HttpError(413, f"body larger than {MAX_BODY} bytes")
        return await reader.readexactly(length)

    @staticmethod
    def _json(raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise HttpError(400, f"body is not JSON: {exc}") from None
