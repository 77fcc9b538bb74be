"""REST resources of experiments: ``/experiments`` (start, list, show, stop, promote).

Thin: each endpoint is one call into :class:`controller.experiments.service.ExperimentService`.
Errors map as everywhere in the API: a spec that cannot work (same version twice, other inputs,
devices in a rollout, a share outside 0-100 %) 422 with its one-line reason, an unknown model
version or experiment 404, a state that does not allow the action 409.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, Field

from controller.experiments.service import ExperimentService
from controller.rest import API, Actor


class StopRequest(BaseModel):
    reason: str = Field(default="", max_length=500)


class PromoteRequest(BaseModel):
    rollout: dict[str, Any] = Field(default_factory=dict, description="the rollout spec's other "
                                    "keys (waves, soak_seconds, gates, on_gate_failure...)")
    force: bool = Field(default=False, description="promote although the test has not declared "
                        "the candidate better")


def experiments_router(service: ExperimentService,
                       require_admin: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix=f"{API}/experiments", tags=["experiments"])
    admin = [Depends(require_admin)]

    @router.post("", status_code=201, dependencies=admin)
    async def start_experiment(actor: Actor,
                               spec: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        """Start an experiment: ``mode`` (shadow, ab), ``candidate`` and ``control`` as
        MODEL:VERSION, ``selector``, ``sample`` (shadow), ``share`` and ``split`` (device,
        request) for A/B, ``design`` (mde, alpha, beta, baseline_accuracy, min_rows, max_rows),
        ``name``. Refused before anything is sent when it cannot work."""
        return await service.start(spec, actor)

    @router.get("")
    async def list_experiments(limit: Annotated[int, Query(ge=1, le=500)] = 50
                               ) -> list[dict[str, Any]]:
        """Newest first."""
        return await service.list_views(limit)

    @router.get("/{experiment_id}")
    async def get_experiment(experiment_id: str) -> dict[str, Any]:
        """Per arm: devices, rows, accuracy with its always-valid interval, latency mean and
        p95, memory, errors; the test's verdict, effect and interval; shadow agreement; refusals;
        the series over time."""
        return await service.view(experiment_id)

    @router.post("/{experiment_id}/stop", dependencies=admin)
    async def stop_experiment(experiment_id: str, actor: Actor,
                              body: StopRequest | None = None) -> dict[str, Any]:
        return await service.stop(experiment_id, actor, body.reason if body else "")

    @router.post("/{experiment_id}/promote", status_code=201, dependencies=admin)
    async def promote_experiment(experiment_id: str, actor: Actor,
                                 body: PromoteRequest | None = None) -> dict[str, Any]:
        """Stop the experiment and start a rollout of its candidate (waves and gates)."""
        body = body or PromoteRequest()
        return await service.promote(experiment_id, actor, body.rollout, body.force)

    return router
