"""The controller's REST API (FastAPI). Thin: each endpoint is one call into ``Controller``.

Library exceptions become status codes here and nowhere else: NotFound 404, Conflict 409,
Validation 422, Storage 503.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Path, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from controller import api_monitoring, api_rollouts, web
from controller.auth import ApiAuth, auth_router, check_exposure
from controller.errors import (
    ConflictError,
    EdgewiseError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from controller.service import Controller
from edge_agent import __version__
from edgewise_wire import Manifest, ProbationPolicy, SchemaError

API = "/api/v1"
MAX_ARTIFACT_UPLOAD = 512 * 1024 * 1024


class DeploymentRequest(BaseModel):
    model: str = Field(min_length=1, max_length=128)
    version: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                description="default: the latest version")
    devices: list[str] | None = Field(default=None, description="default: every known device")
    # issue 4: the health window before the devices commit it (edge_agent ProbationPolicy)
    probation: dict[str, Any] | None = Field(
        default=None, description="{duration_s, max_error_rate, max_p95_latency_ms, "
        "min_predictions}; default: each agent's own probation_s")


_STATUS = {NotFoundError: 404, ConflictError: 409, ValidationError: 422, StorageError: 503}


def create_app(controller: Controller) -> FastAPI:
    # -- security (issue 9, controller/auth.py): tokens scoped read or admin. `require_token`
    # (admin, for calls that change state) and `require_read` (views) are what routers receive;
    # require_read also guards every route through the app-wide dependency below.
    auth = ApiAuth.from_config(controller.config)
    check_exposure(controller.config)
    require_token = auth.require_admin
    require_read = auth.require_read
    app = FastAPI(title="Edgewise controller", version=__version__,
                  description="Model registry, fleet state and deployments for Edgewise.",
                  dependencies=[Depends(require_read)])
    app.include_router(auth_router(auth))
    # -- end security
    app.include_router(api_rollouts.routes(controller, require_token))  # issue 5: rollouts, devices, audit
    app.include_router(web.routes(controller, require_token))  # issue 7: dashboard, views, /metrics
    app.include_router(api_monitoring.routes(controller, require_token))  # issue 6: alerts, metrics

    @app.exception_handler(EdgewiseError)
    async def _edgewise_error(request: Request, exc: EdgewiseError) -> JSONResponse:
        status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 400)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.get(f"{API}/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "mqtt_connected": controller.bridge.link.connected,
                "bridge": dict(controller.bridge.stats), "chunks": dict(controller.bridge.chunks.stats),
                # issue 10: is this replica the one running rollouts and alerts?
                "lease": {"holder_id": controller.lease.holder, "held": controller.lease.held,
                          "term": controller.lease.term, **controller.lease.stats}}

    # GET /models (paged, filtered): controller/web/api_views.py

    @app.get(f"{API}/models/{{name}}")
    def get_model(name: str) -> dict[str, Any]:
        versions = controller.registry.list_versions(name)
        if not versions:
            raise NotFoundError("model", name)
        return {"name": name, "versions": versions}

    @app.get(f"{API}/models/{{name}}/versions/{{version}}/manifest")
    def get_manifest(name: str, version: Annotated[int, Path(ge=0, le=2**31 - 1)]) -> dict[str, Any]:
        return controller.registry.get_manifest(name, version).to_dict()

    @app.post(f"{API}/models/{{name}}/versions", status_code=201,
              dependencies=[Depends(require_token)])
    async def push_version(name: str, manifest: Annotated[str, Form()],
                           artifact: Annotated[UploadFile, File()]) -> dict[str, Any]:
        try:
            parsed = Manifest.from_dict(json.loads(manifest))
        except (json.JSONDecodeError, SchemaError) as exc:
            raise HTTPException(422, f"manifest is not valid: {exc}") from None
        if parsed.model != name:
            raise HTTPException(422, f"manifest is for model {parsed.model!r}, not {name!r}")
        data = await artifact.read(MAX_ARTIFACT_UPLOAD + 1)
        if len(data) > MAX_ARTIFACT_UPLOAD:
            raise HTTPException(413, f"artifact larger than {MAX_ARTIFACT_UPLOAD} bytes")
        stored = await asyncio.to_thread(controller.push_model, parsed, data)
        return {"model": stored.model, "version": stored.version,
                "sha256": stored.artifact.sha256, "size": stored.artifact.size}

    # GET /devices and /devices/{id}: controller/api_rollouts.py (issue 5; the same fields plus
    # effective labels, ?selector=, pre-registered devices)

    @app.post(f"{API}/deployments", status_code=201, dependencies=[Depends(require_token)])
    async def create_deployment(body: DeploymentRequest) -> dict[str, Any]:
        # async: publishing must happen on the loop that drives the MQTT connection
        try:
            probation = (ProbationPolicy.from_dict(body.probation)
                         if body.probation is not None else None)
        except SchemaError as exc:
            raise HTTPException(422, str(exc)) from None
        return await controller.deploy(body.model, body.version, body.devices, probation)

    @app.get(f"{API}/telemetry/count")
    def telemetry_count(device_id: str | None = None, kind: str | None = None) -> dict[str, int]:
        return {"count": controller.telemetry.count(device_id, kind)}

    return app
