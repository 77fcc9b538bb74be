"""The dashboard's files: one HTML page, its script and its style sheet, shipped in the package
(``controller/web/static``) and served from memory. No CDN, no third-party code.

They are plain Starlette routes (a mount), outside the API's token check on purpose: they hold
no data, and the page asks for a token when the API refuses one (``dashboard_public = false``).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route, Router

DASHBOARD = "/dashboard/"
STATIC_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# The page runs only its own script and style sheet and talks only to this controller.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _read(name: str) -> bytes:
    return (resources.files("controller.web.static") / name).read_bytes()


def pages_router() -> APIRouter:
    files = {name: _read(name) for name in STATIC_TYPES}
    index = _read("index.html")

    async def dashboard(request: Request) -> Response:
        return HTMLResponse(index, headers=SECURITY_HEADERS)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in files:
            return PlainTextResponse(f"no dashboard file {name!r}", status_code=404)
        return Response(files[name], media_type=STATIC_TYPES[name], headers=SECURITY_HEADERS)

    async def root(request: Request) -> Response:
        return RedirectResponse(DASHBOARD, status_code=307)

    router = APIRouter()
    router.routes.append(Route("/", root, methods=["GET", "HEAD"]))
    router.mount("/dashboard", Router(routes=[
        Route("/", dashboard, methods=["GET", "HEAD"]),
        Route("/static/{name}", static, methods=["GET", "HEAD"]),
    ]))
    return router
