"""The controller's REST API (FastAPI): every feature's routers, composed over one
:class:`~controller.app.service.Controller`.

Each resource has one router in its feature (``controller/<feature>/api.py``); this module only
hands them what they use. Library exceptions become status codes here and nowhere else:
NotFound 404, Conflict 409, Validation 422, Storage 503.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from controller.agent_bundles.api import agent_versions_router
from controller.app.body_limits import BodyLimits
from controller.app.service import Controller
from controller.audit.api import audit_router
from controller.data.api import data_router
from controller.device_health.api import device_health_router
from controller.errors import (
    ConflictError,
    EdgewiseError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from controller.experiments.api import experiments_router
from controller.fleet.api import devices_router, fleet_router, telemetry_router
from controller.models.api import MAX_ARTIFACT_UPLOAD, models_router
from controller.monitoring.api import alerts_router, metrics_router, retrain_runs_router
from controller.monitoring.drift_api import drift_router
from controller.rest import API, MAX_FORM_OVERHEAD, MAX_JSON_BODY, MAX_JSON_DEPTH
from controller.rollouts.api import deployments_router, rollouts_router
from controller.sampling.api import sampling_router
from controller.security.approvals_api import approvals_router
from controller.security.auth import ApiAuth, auth_router, check_exposure
from controller.security.enroll_api import enroll_router
from controller.web.pages import pages_router
from controller.web.prometheus import metrics_router as prometheus_router

try:  # the installed distribution's version; a plain checkout has none
    __version__ = version("edgewise")
except PackageNotFoundError:
    __version__ = "0+unknown"

_STATUS = {NotFoundError: 404, ConflictError: 409, ValidationError: 422, StorageError: 503}


def create_app(controller: Controller) -> FastAPI:
    # tokens scoped read or admin: `require_admin` guards calls that change state;
    # `require_read` guards every route through the app-wide dependency
    auth = ApiAuth.from_config(controller.config)
    check_exposure(controller.config)
    admin = auth.require_admin
    app = FastAPI(title="Edgewise controller", version=__version__,
                  description="Model registry, fleet state and deployments for Edgewise.",
                  dependencies=[Depends(auth.require_read)])
    c = controller
    app.include_router(auth_router(auth))
    app.include_router(models_router(c.registry, c.model_views, c.health.model_summary, admin))
    app.include_router(agent_versions_router(c.agent_bundles, c.agent_deployer, admin))
    app.include_router(devices_router(c.devices, c.fleet_views, c.health, admin))
    app.include_router(fleet_router(c.fleet_views, c.health))
    app.include_router(telemetry_router(c.telemetry.count))
    app.include_router(data_router(c.db, c.registry.get_manifest, admin))
    app.include_router(sampling_router(c.sampling, admin))
    app.include_router(deployments_router(c.deployments, c.deployment_views, admin))
    app.include_router(rollouts_router(c.rollouts, admin))
    app.include_router(experiments_router(c.experiments, admin))
    app.include_router(audit_router(c.audit))
    app.include_router(alerts_router(c.alerts, c.monitoring.evaluate_now, c.monitoring.settings,
                                    admin, c.alert_marks))
    app.include_router(retrain_runs_router(c.retrain_runs))
    app.include_router(metrics_router(c.metrics))
    app.include_router(drift_router(c.drift))
    app.include_router(device_health_router(c.device_health, c.device_logs))
    app.include_router(enroll_router(c.config.data_dir))
    app.include_router(approvals_router(c.config.data_dir, c.audit, admin))
    app.include_router(pages_router())
    app.include_router(prometheus_router(c.health, c.metrics, lambda: dict(c.bridge.stats),
                                         c.drift.latest, c.device_health, c.notifier.figures))

    # bodies bounded in size and nesting before any route parses them (docs/security.md)
    app.add_middleware(BodyLimits, max_body=MAX_JSON_BODY,
                       max_upload=MAX_ARTIFACT_UPLOAD + MAX_FORM_OVERHEAD,
                       max_depth=MAX_JSON_DEPTH)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_errors(exc)}, status_code=422)

    @app.exception_handler(EdgewiseError)
    async def _edgewise_error(request: Request, exc: EdgewiseError) -> JSONResponse:
        status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 400)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.get(f"{API}/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__,
                "mqtt_connected": c.bridge.link.connected,
                "bridge": dict(c.bridge.stats), "chunks": dict(c.bridge.chunks.stats),
                # is this replica the one running rollouts and alerts?
                "lease": {"holder_id": c.lease.holder, "held": c.lease.held,
                          "term": c.lease.term, **c.lease.stats}}

    return app


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's 422 body without what it echoes back: the input (and the constraint context)
    may be anything the client sent, ``1e400`` parsed to infinity or NaN among them, which a
    JSON response cannot carry. Where and what is wrong is kept."""
    return [{"loc": [part if isinstance(part, (str, int)) else str(part)
                     for part in error.get("loc", ())],
             "msg": str(error.get("msg", "invalid")), "type": str(error.get("type", ""))}
            for error in exc.errors()]
