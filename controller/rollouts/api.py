"""REST resources of rollouts: ``/rollouts`` (start, list, show, pause, resume, abort) and
``/deployments`` (a version set on devices at once, and how far each deployment got).

Thin: each endpoint is one call into the runner (:mod:`controller.rollouts.runner`), the
deployment service (:mod:`controller.rollouts.deployments`) or their read models. Errors map as
everywhere in the API (``controller/app/api.py``): a spec that cannot work, a bad selector or
label 422 with the precise message, an unknown model version or rollout 404, an overlap with
another rollout or a state that does not allow the action 409.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Response
from pydantic import BaseModel, Field

from controller.rest import API, PAGED, TOTAL_HEADER, Actor, Limit, Offset, in_thread
from controller.rollouts.deployment_views import DeploymentViews
from controller.rollouts.deployments import Deployments
from controller.rollouts.runner import RolloutRunner
from controller.rollouts.schemas import DeploymentCreated, DeploymentProgress, RolloutSpecBody
from edgewise_wire import ProbationPolicy, SchemaError


class ActionRequest(BaseModel):
    reason: str = Field(default="", max_length=500)


class DeploymentRequest(BaseModel):
    model: str = Field(min_length=1, max_length=128)
    version: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                description="default: the latest version")
    devices: list[str] | None = Field(
        default=None, max_length=100_000,
        description="default: every known device; each id 1-64 letters, digits, '_', '-' or "
        "'.', starting with a letter or digit (one invalid id refuses the whole deployment)")
    # the health window before the devices commit it (ProbationPolicy)
    probation: dict[str, Any] | None = Field(
        default=None, description="{duration_s, max_error_rate, max_p95_latency_ms, "
        "min_predictions}; default: each agent's own probation_s")


def rollouts_router(runner: RolloutRunner, require_admin: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix=f"{API}/rollouts", tags=["rollouts"])
    admin = [Depends(require_admin)]

    @router.post("", status_code=201, dependencies=admin, openapi_extra={"requestBody": {
        "required": True,
        "content": {"application/json": {"schema": RolloutSpecBody.model_json_schema()}}}})
    async def create_rollout(response: Response, actor: Actor,
                             spec: Annotated[dict[str, Any], Body()],
                             dry_run: bool = False) -> dict[str, Any]:
        """Start a rollout from a spec (the keys of a rollout spec file, docs/rollouts.md);
        ``dry_run=true`` validates it and shows the plan without storing or sending anything."""
        view = await runner.create(spec, actor, dry_run=dry_run)
        if dry_run:
            response.status_code = 200
        return view

    @router.get("")
    async def list_rollouts(all: bool = True,
                            limit: Annotated[int, Query(ge=1, le=500)] = 20) -> list[dict[str, Any]]:
        """Newest first; ``all=false`` shows only live ones (pending, running, soaking, paused,
        aborting)."""
        return await runner.list_views(limit=limit, include_finished=all)

    @router.get("/{ref}")
    async def get_rollout(ref: str) -> dict[str, Any]:
        """A rollout by id (or name): waves, counts, gate values against thresholds."""
        return await runner.view(ref)

    @router.post("/{ref}/pause", dependencies=admin)
    async def pause_rollout(ref: str, actor: Actor,
                            body: ActionRequest | None = None) -> dict[str, Any]:
        return await runner.pause(ref, actor, body.reason if body else "")

    @router.post("/{ref}/resume", dependencies=admin)
    async def resume_rollout(ref: str, actor: Actor,
                             body: ActionRequest | None = None) -> dict[str, Any]:
        return await runner.resume(ref, actor, body.reason if body else "")

    @router.post("/{ref}/abort", dependencies=admin)
    async def abort_rollout(ref: str, actor: Actor,
                            body: ActionRequest | None = None) -> dict[str, Any]:
        """Stop and send every device the rollout moved back to what it ran before."""
        return await runner.abort(ref, actor, body.reason if body else "")

    return router


def deployments_router(deployments: Deployments, views: DeploymentViews,
                       require_admin: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix=f"{API}/deployments", tags=["deployments"])
    admin = [Depends(require_admin)]
    run = in_thread

    @router.post("", status_code=201, dependencies=admin, response_model=DeploymentCreated)
    async def create_deployment(body: DeploymentRequest) -> dict[str, Any]:
        # async: publishing must happen on the loop that drives the MQTT connection
        try:
            probation = (ProbationPolicy.from_dict(body.probation)
                         if body.probation is not None else None)
        except SchemaError as exc:
            raise HTTPException(422, str(exc)) from None
        return await deployments.deploy(body.model, body.version, body.devices, probation)

    @router.get("", response_model=list[DeploymentProgress], responses=PAGED)
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

    @router.get("/{deployment_id}", response_model=DeploymentProgress)
    async def deployment_progress(deployment_id: str) -> dict[str, Any]:
        """One deployment and how far its devices got: active, installing, failed, waiting."""
        return await run(views.deployment_progress, deployment_id)

    return router
