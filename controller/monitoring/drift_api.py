"""``/drift``: which feature of a model version drifted, over time and across the fleet.

One resource, one router: ``GET /drift/{model}`` answers per feature in time buckets, or per
device or label group over the range, with markers for version changes and alerts. Each call
is one read of :class:`~controller.monitoring.drift_views.DriftViews`, off the event loop.
It lives beside ``api.py`` rather than in it so that the drift view and the alert endpoints
change independently.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Path, Query

from controller.fleet.selectors import DEFAULT_GROUP_LABEL
from controller.monitoring.schemas import DriftView
from controller.rest import API, MAX_PAGE, Buckets, GroupBy, Window, in_thread


class DriftSource(Protocol):
    """What the router reads (``controller/monitoring/drift_views.py``)."""

    def view(self, model: str, version: int | None, now: float, window: float, buckets: int,
             by: Literal["feature", "device", "group"] = "feature", group_by: str = "site",
             top: int | None = None, limit: int | None = None) -> dict[str, Any]: ...


def drift_router(views: DriftSource) -> APIRouter:
    router = APIRouter(prefix=f"{API}/drift", tags=["drift"])

    @router.get("/{model}", response_model=DriftView)
    async def model_drift(
        model: Annotated[str, Path(min_length=1, max_length=128)],
        version: Annotated[int | None, Query(ge=0, le=2**31 - 1,
                                             description="default: the latest version")] = None,
        window: Window = 3600,
        buckets: Buckets = 60,
        by: Annotated[Literal["feature", "device", "group"], Query(
            description="feature: each feature over time; device, group: each device or "
                        "label group over the whole range")] = "feature",
        group_by: GroupBy = DEFAULT_GROUP_LABEL,
        top: Annotated[int | None, Query(ge=1, le=1000, description=(
            "by=feature: only the most drifted features (default: all)"))] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description=(
            "by=device|group: the most drifted rows"))] = 100,
    ) -> dict[str, Any]:
        """Per-feature drift of a model version (PSI of the fleet's histograms added up per
        time bucket, against the registered reference profile), or per device or label group
        over the range; with markers where the version started or stopped running on devices,
        where rollouts and deployments began and ended, and where alerts fired and cleared.
        Unknown model or version: 404."""
        return await in_thread(views.view, model, version, time.time(), window, buckets, by,
                               group_by, top, limit)

    return router
