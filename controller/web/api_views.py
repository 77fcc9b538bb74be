"""REST endpoints behind the dashboard and the CLI views: paged and filtered device and model
lists, device history, errors and time series, fleet overview, model summary, deployment
progress. All read-only (GET). Library errors become status codes in ``controller/api.py``."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response

from controller.rollouts.selectors import parse_selector
from controller.web.health import DEFAULT_GROUP_LABEL, FleetHealth
from controller.web.queries import DeviceFilter, FleetViews, parse_model_ref
from controller.web.schemas import (
    DeploymentProgress,
    DevicePage,
    ErrorEntry,
    HistoryEntry,
    ModelOut,
    ModelSummary,
    Overview,
    Series,
)
from edgewise_wire.update_states import UPDATE_STATE_NAMES as UPDATE_STATES

API = "/api/v1"
MAX_PAGE = 5000
MAX_OFFSET = 10_000_000
TOTAL_HEADER = "X-Total-Count"
_PAGED: dict[int | str, dict[str, Any]] = {200: {"headers": {TOTAL_HEADER: {
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
DeviceId = Annotated[str, Query(max_length=128)]


def api_router(views: FleetViews, health: FleetHealth) -> APIRouter:
    router = APIRouter(prefix=API, tags=["views"])

    def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
        # the queries block: keep them off the event loop that drives the MQTT connection
        return asyncio.to_thread(fn, *args, **kwargs)

    @router.get("/fleet/devices", response_model=DevicePage)
    async def fleet_devices(
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")] = 50,
        offset: Offset = 0,
        q: Annotated[str | None, Query(max_length=128,
                                       description="part of the device id")] = None,
        online: Annotated[bool | None, Query(description="only online (or offline) "
                                                         "devices")] = None,
        model: Annotated[str | None, Query(max_length=140, description="NAME or NAME:VERSION "
                                                                       "the device runs")] = None,
        state: Annotated[str | None, Query(max_length=32, description="update state, e.g. "
                                                                      "failed")] = None,
        selector: Annotated[str | None, Query(max_length=2048, description="label selector, "
                                              "e.g. site=berlin,hw in (pi4,pi5)")] = None,
        sort: Literal["device_id", "-device_id", "last_seen", "-last_seen"] = "device_id",
    ) -> dict[str, Any]:
        """One page of the devices that have connected, with their reported state, effective
        labels and all-time telemetry counts; ``total`` counts every match. (``GET /devices``
        lists every device, pre-registered ones too, unpaged.)"""
        if state is not None and state not in UPDATE_STATES:
            raise HTTPException(422, f"state {state!r} is not one of {list(UPDATE_STATES)}")
        name, version = parse_model_ref(model) if model is not None else (None, None)
        parsed = parse_selector(selector) if selector is not None else None
        rows, total = await run(views.list_devices, DeviceFilter(
            q=q, online=online, model=name, version=version, state=state, selector=parsed,
            sort=sort, limit=limit, offset=offset))
        return {"items": rows, "total": total, "limit": limit, "offset": offset}

    @router.get("/devices/{device_id}/history", response_model=list[HistoryEntry])
    async def device_history(device_id: str,
                             limit: Annotated[int, Query(ge=1, le=500)] = 50
                             ) -> list[dict[str, Any]]:
        """Changes of the device's update state and active model version, newest first."""
        return await run(views.device_history, device_id, limit)

    @router.get("/devices/{device_id}/errors", response_model=list[ErrorEntry])
    async def device_errors(device_id: str,
                            limit: Annotated[int, Query(ge=1, le=500)] = 20
                            ) -> list[dict[str, Any]]:
        """The device's latest inference errors and failed updates, newest first."""
        return await run(views.device_errors, device_id, limit)

    @router.get("/devices/{device_id}/series", response_model=Series)
    async def device_series(device_id: str, window: Window = 3600,
                            buckets: Buckets = 60) -> dict[str, Any]:
        """Predictions, latency, accuracy, errors and drift of one device per time bucket."""
        return await run(health.device_series, device_id, time.time(), window, buckets)

    @router.get("/fleet/overview", response_model=Overview)
    async def fleet_overview(window: Window = 900,
                             group_by: GroupBy = DEFAULT_GROUP_LABEL) -> dict[str, Any]:
        """Devices online/offline, versions in use, health per label group and firing alerts;
        rates over the last ``window`` seconds."""
        return await run(health.overview, time.time(), window, group_by)

    @router.get("/fleet/series", response_model=Series)
    async def fleet_series(window: Window = 3600, buckets: Buckets = 60,
                           model: Annotated[str | None, Query(max_length=140)] = None
                           ) -> dict[str, Any]:
        """Fleet-wide figures per time bucket (optionally of one NAME or NAME:VERSION)."""
        name, version = parse_model_ref(model) if model is not None else (None, None)
        return await run(health.fleet_series, time.time(), window, buckets, name, version)

    @router.get("/models", response_model=list[ModelOut], responses=_PAGED)
    async def list_models(
        response: Response, limit: Limit = None, offset: Offset = 0,
        q: Annotated[str | None, Query(max_length=128, description="part of the name")] = None,
    ) -> list[dict[str, Any]]:
        """Registered models with their version counts, paged; total in X-Total-Count."""
        rows, total = await run(views.list_models, q, limit, offset)
        response.headers[TOTAL_HEADER] = str(total)
        return rows

    @router.get("/models/{name}/summary", response_model=ModelSummary)
    async def model_summary(name: str, window: Window = 3600,
                            group_by: GroupBy = DEFAULT_GROUP_LABEL) -> dict[str, Any]:
        """Every version with its conversion parity, where it runs (per label group) and how
        it does there over the last ``window`` seconds."""
        def build() -> dict[str, Any]:
            placement = views.version_placement(name)
            return health.model_summary(name, time.time(), window, group_by, placement)
        return await run(build)

    @router.get("/deployments/{deployment_id}", response_model=DeploymentProgress)
    async def deployment_progress(deployment_id: str) -> dict[str, Any]:
        """One deployment and how far its devices got: active, installing, failed, waiting."""
        return await run(views.deployment_progress, deployment_id)

    @router.get("/deployments", response_model=list[DeploymentProgress], responses=_PAGED)
    async def list_deployments(
        response: Response, limit: Limit = None, offset: Offset = 0,
        sort: Literal["created_at", "-created_at"] = "created_at",
    ) -> list[dict[str, Any]]:
        """Deployments (oldest first; ``sort=-created_at`` for newest first) with their
        progress counts, paged; total in X-Total-Count."""
        rows, total = await run(views.list_deployments, limit, offset,
                                sort == "-created_at")
        response.headers[TOTAL_HEADER] = str(total)
        return rows

    return router

