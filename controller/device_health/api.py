"""REST resources of device health: one device's windows, alerts and versions' cost
(``/devices/{id}/health``), its recent log lines (``/devices/{id}/logs``), and the fleet's
newest windows and firing health alerts (``/health``)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from controller.device_health.logs import DeviceUnreachable, LogsRequester
from controller.device_health.views import DeviceHealthViews
from controller.rest import API, in_thread
from edgewise_wire.errors import TopicError
from edgewise_wire.topics import validate_device_id

Since = Annotated[float, Query(ge=60, le=30 * 86400,
                               description="seconds back from now the windows cover")]


def device_health_router(views: DeviceHealthViews, logs: LogsRequester | None) -> APIRouter:
    router = APIRouter(prefix=API, tags=["device health"])

    @router.get("/devices/{device_id}/health")
    async def device_health(device_id: str, window: Since = 6 * 3600) -> dict[str, Any]:
        """The device's health windows of the last ``window`` seconds (oldest first), its firing
        health alerts with their explanation, and what each model version cost on it."""
        return await in_thread(views.device, device_id, time.time() - window)

    @router.get("/devices/{device_id}/logs")
    async def device_logs(
            device_id: str,
            since: Annotated[float, Query(ge=0, le=30 * 86400,
                                          description="seconds back from now")] = 600,
            max_lines: Annotated[int, Query(ge=1, le=1000)] = 200,
            timeout: Annotated[float, Query(gt=0, le=60)] = 5.0) -> dict[str, Any]:
        """The device's recent log lines (warnings and errors by default), asked over MQTT.
        409 when the device does not answer in ``timeout`` seconds (offline, or an agent
        from before logs on demand) or the controller has no broker connection."""
        try:
            validate_device_id(device_id)
        except TopicError as exc:
            raise HTTPException(422, str(exc)) from None
        if logs is None:
            raise HTTPException(409, "this controller has no MQTT link to ask devices")
        try:
            return await logs.fetch(device_id, time.time() - since, max_lines, timeout)
        except DeviceUnreachable as exc:
            raise HTTPException(409, str(exc)) from None

    @router.get("/health/devices")
    async def fleet_health(
            ids: Annotated[str | None, Query(max_length=20_000, description=(
                "only these devices, comma-separated (a page of the fleet table)"))] = None,
            alerts: Annotated[bool, Query(description="judge the health alerts too")] = True,
    ) -> dict[str, Any]:
        """Every device's newest health window (or those of ``ids``), the firing health alerts,
        the thresholds, and this replica's counts of health windows stored and of fields left
        out, by reason."""
        wanted = [i for i in ids.split(",") if i] if ids is not None else None
        latest = await in_thread(views.latest, wanted)
        firing = await in_thread(views.alerts) if alerts else []
        if wanted is not None:
            firing = [a for a in firing if a.device_id in set(wanted)]
        return {"devices": latest, "alerts": [a.to_dict() for a in firing],
                "thresholds": views.thresholds.to_dict(), "stats": dict(views.store.stats)}

    @router.get("/health/alerts")
    async def health_alerts() -> list[dict[str, Any]]:
        """The firing health alerts of every device, each with its explanation."""
        return [a.to_dict() for a in await in_thread(views.alerts)]

    return router
