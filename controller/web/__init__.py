"""Fleet health views: the web dashboard, the REST endpoints behind it, and ``/metrics``.

``controller/api.py`` includes :func:`routes`; everything else of the views lives in this
package (docs/dashboard.md). Who may read is decided app-wide by ``controller/auth.py``
(``dashboard_public``, read tokens).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from controller.web.health import FleetHealth
from controller.web.queries import FleetViews

if TYPE_CHECKING:
    from controller.service import Controller

__all__ = ["FleetHealth", "FleetViews", "routes"]


def routes(controller: Controller, require_token: Callable[..., None]) -> APIRouter:
    """The dashboard pages, the view endpoints under /api/v1 and /metrics.

    Every route here only reads; ``require_token`` (the API token check of calls that change
    state) is taken so that a later view that changes something uses the same check.
    """
    from controller.metrics_store import MetricsStore
    from controller.web.api_views import api_router
    from controller.web.pages import pages_router
    from controller.web.prometheus import metrics_router

    metrics_store: Any = getattr(controller, "metrics", None) or MetricsStore(controller.db)
    views = FleetViews(controller.db, controller.registry, controller.fleet)
    health = FleetHealth(controller.db, controller.registry, alerts=_alerts_source(controller),
                         metrics_store=metrics_store)
    router = APIRouter()
    router.include_router(api_router(views, health))
    router.include_router(pages_router())
    router.include_router(metrics_router(health, metrics_store,
                                         lambda: dict(controller.bridge.stats)))
    return router


def _alerts_source(controller: Controller) -> Callable[[], list[dict[str, Any]] | None] | None:
    """Firing alerts from the monitoring side's alert store, when this controller has one."""
    store = getattr(controller, "alerts", None)
    if store is None or not callable(getattr(store, "alerts", None)):
        return None
    return lambda: list(store.alerts())
