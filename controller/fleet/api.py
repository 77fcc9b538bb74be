"""REST resources of the fleet: ``/devices`` (the registry, labels, each device's history,
errors and figures over time), ``/fleet`` (the paged device list, the overview, fleet-wide
series) and ``/telemetry``. One router per resource; each endpoint is one call into what the
router is given.

The figures over time come from the fleet health views, which add up telemetry, metrics windows
and alerts (``controller/web/health.py``); the routers take them through :class:`HealthViews`,
so this feature does not import the features above it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from controller.fleet.device_registry import DeviceRegistry
from controller.fleet.queries import DeviceFilter, FleetViews
from controller.fleet.schemas import Count, DevicePage, ErrorEntry, HistoryEntry, Overview, Series
from controller.fleet.selectors import DEFAULT_GROUP_LABEL, parse_selector
from controller.fleet.versions import parse_model_ref
from controller.rest import API, MAX_PAGE, Actor, Buckets, GroupBy, Offset, Window, in_thread
from edgewise_wire.update_states import UPDATE_STATE_NAMES


class HealthViews(Protocol):
    """What the fleet health views answer (``controller/web/health.py``)."""

    def device_series(self, device_id: str, now: float, window: float,
                      buckets: int) -> dict[str, Any]: ...

    def fleet_series(self, now: float, window: float, buckets: int, model: str | None = None,
                     version: int | None = None) -> dict[str, Any]: ...

    def overview(self, now: float, window: float, group_by: str = DEFAULT_GROUP_LABEL
                 ) -> dict[str, Any]: ...


class LabelsRequest(BaseModel):
    set: dict[str, str] = Field(default_factory=dict, description="labels to set or override")
    remove: list[str] = Field(default_factory=list, description="operator labels to remove")


class RegisterRequest(BaseModel):
    device_id: str = Field(min_length=1, max_length=64)
    labels: dict[str, str] = Field(default_factory=dict)
    note: str = Field(default="", max_length=500)


def devices_router(registry: DeviceRegistry, views: FleetViews, health: HealthViews,
                   require_admin: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix=f"{API}/devices", tags=["devices"])
    admin = [Depends(require_admin)]
    run = in_thread

    @router.get("")
    def list_devices(selector: str | None = None) -> list[dict[str, Any]]:
        """Every known device with effective labels; ``selector`` filters
        (``site=berlin,hw in (pi4,pi5)``). Pre-registered devices that never connected show
        ``seen: false``."""
        return registry.list(selector)

    @router.get("/{device_id}")
    def get_device(device_id: str) -> dict[str, Any]:
        return registry.show(device_id)

    @router.post("", status_code=201, dependencies=admin)
    def register_device(body: RegisterRequest, actor: Actor) -> dict[str, Any]:
        """Pre-register a device (with operator labels) before its first contact."""
        return registry.register(body.device_id, body.labels, actor, body.note)

    @router.patch("/{device_id}/labels", dependencies=admin)
    def set_labels(device_id: str, body: LabelsRequest, actor: Actor) -> dict[str, Any]:
        """Set operator labels (they override the device's own) and remove operator labels."""
        return registry.set_labels(device_id, body.set, body.remove, actor)

    @router.get("/{device_id}/history", response_model=list[HistoryEntry])
    async def device_history(device_id: str,
                             limit: Annotated[int, Query(ge=1, le=500)] = 50
                             ) -> list[dict[str, Any]]:
        """Changes of the device's update state and active model version, newest first."""
        return await run(views.device_history, device_id, limit)

    @router.get("/{device_id}/errors", response_model=list[ErrorEntry])
    async def device_errors(device_id: str,
                            limit: Annotated[int, Query(ge=1, le=500)] = 20
                            ) -> list[dict[str, Any]]:
        """The device's latest inference errors and failed updates, newest first."""
        return await run(views.device_errors, device_id, limit)

    @router.get("/{device_id}/series", response_model=Series)
    async def device_series(device_id: str, window: Window = 3600,
                            buckets: Buckets = 60) -> dict[str, Any]:
        """Predictions, latency, accuracy, errors and drift of one device per time bucket."""
        return await run(health.device_series, device_id, time.time(), window, buckets)

    return router


def fleet_router(views: FleetViews, health: HealthViews) -> APIRouter:
    router = APIRouter(prefix=f"{API}/fleet", tags=["fleet"])
    run = in_thread

    @router.get("/devices", response_model=DevicePage)
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
        if state is not None and state not in UPDATE_STATE_NAMES:
            raise HTTPException(422, f"state {state!r} is not one of {list(UPDATE_STATE_NAMES)}")
        name, version = parse_model_ref(model) if model is not None else (None, None)
        parsed = parse_selector(selector) if selector is not None else None
        rows, total = await run(views.list_devices, DeviceFilter(
            q=q, online=online, model=name, version=version, state=state, selector=parsed,
            sort=sort, limit=limit, offset=offset))
        return {"items": rows, "total": total, "limit": limit, "offset": offset}

    @router.get("/overview", response_model=Overview)
    async def fleet_overview(window: Window = 900,
                             group_by: GroupBy = DEFAULT_GROUP_LABEL) -> dict[str, Any]:
        """Devices online/offline, versions in use, health per label group and firing alerts;
        rates over the last ``window`` seconds."""
        return await run(health.overview, time.time(), window, group_by)

    @router.get("/series", response_model=Series)
    async def fleet_series(window: Window = 3600, buckets: Buckets = 60,
                           model: Annotated[str | None, Query(max_length=140)] = None
                           ) -> dict[str, Any]:
        """Fleet-wide figures per time bucket (optionally of one NAME or NAME:VERSION)."""
        name, version = parse_model_ref(model) if model is not None else (None, None)
        return await run(health.fleet_series, time.time(), window, buckets, name, version)

    return router


def telemetry_router(count_telemetry: Callable[[str | None, str | None], int]) -> APIRouter:
    router = APIRouter(prefix=f"{API}/telemetry", tags=["telemetry"])

    @router.get("/count", response_model=Count)
    def telemetry_count(device_id: str | None = None, kind: str | None = None) -> dict[str, int]:
        return {"count": count_telemetry(device_id, kind)}

    return router
