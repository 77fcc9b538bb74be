"""REST endpoints for rollouts, the device registry and the audit log (issue 5).

Thin: each endpoint is one call into ``controller.rollouts`` (the runner) or its device
registry. Errors map as everywhere in the API (``controller/api.py``): a spec that cannot work
or a bad selector or label 422 with the precise message, an unknown model version or rollout
404, an overlap with another rollout or a state that does not allow the action 409.

``X-Edgewise-Actor`` (the CLI sends ``user@host``) names who acted in the audit log; it is a
claim for the record, not an identity check (tokens guard the calls).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Response
from pydantic import BaseModel, Field

from controller.rollout_store import MAX_ID
from controller.service import Controller

API = "/api/v1"
_ACTOR_CHARS = re.compile(r"[^A-Za-z0-9_.@:+/ -]")


class ActionRequest(BaseModel):
    reason: str = Field(default="", max_length=500)


class LabelsRequest(BaseModel):
    set: dict[str, str] = Field(default_factory=dict, description="labels to set or override")
    remove: list[str] = Field(default_factory=list, description="operator labels to remove")


class RegisterRequest(BaseModel):
    device_id: str = Field(min_length=1, max_length=64)
    labels: dict[str, str] = Field(default_factory=dict)
    note: str = Field(default="", max_length=500)


def actor_of(x_edgewise_actor: Annotated[str | None, Header()] = None) -> str:
    """``operator:NAME`` from the X-Edgewise-Actor header, ``operator:api`` without one."""
    name = _ACTOR_CHARS.sub("", x_edgewise_actor or "").strip()[:64]
    return f"operator:{name or 'api'}"


Actor = Annotated[str, Depends(actor_of)]


def routes(controller: Controller, require_token: Callable[..., Any]) -> APIRouter:
    router = APIRouter()
    runner = controller.rollouts
    admin = [Depends(require_token)]

    # -- rollouts --------------------------------------------------------------------------------

    @router.post(f"{API}/rollouts", status_code=201, dependencies=admin)
    async def create_rollout(response: Response, actor: Actor,
                             spec: Annotated[dict[str, Any], Body()],
                             dry_run: bool = False) -> dict[str, Any]:
        """Start a rollout from a spec (the keys of a rollout spec file, docs/rollouts.md);
        ``dry_run=true`` validates it and shows the plan without storing or sending anything."""
        view = await runner.create(spec, actor, dry_run=dry_run)
        if dry_run:
            response.status_code = 200
        return view

    @router.get(f"{API}/rollouts")
    async def list_rollouts(all: bool = True,
                            limit: Annotated[int, Query(ge=1, le=500)] = 20) -> list[dict[str, Any]]:
        """Newest first; ``all=false`` shows only live ones (pending, running, soaking, paused,
        aborting)."""
        return await runner.list_views(limit=limit, include_finished=all)

    @router.get(f"{API}/rollouts/{{ref}}")
    async def get_rollout(ref: str) -> dict[str, Any]:
        """A rollout by id (or name): waves, counts, gate values against thresholds."""
        return await runner.view(ref)

    @router.post(f"{API}/rollouts/{{ref}}/pause", dependencies=admin)
    async def pause_rollout(ref: str, actor: Actor,
                            body: ActionRequest | None = None) -> dict[str, Any]:
        return await runner.pause(ref, actor, body.reason if body else "")

    @router.post(f"{API}/rollouts/{{ref}}/resume", dependencies=admin)
    async def resume_rollout(ref: str, actor: Actor,
                             body: ActionRequest | None = None) -> dict[str, Any]:
        return await runner.resume(ref, actor, body.reason if body else "")

    @router.post(f"{API}/rollouts/{{ref}}/abort", dependencies=admin)
    async def abort_rollout(ref: str, actor: Actor,
                            body: ActionRequest | None = None) -> dict[str, Any]:
        """Stop and send every device the rollout moved back to what it ran before."""
        return await runner.abort(ref, actor, body.reason if body else "")

    # -- devices ---------------------------------------------------------------------------------

    @router.get(f"{API}/devices")
    def list_devices(selector: str | None = None) -> list[dict[str, Any]]:
        """Every known device with effective labels; ``selector`` filters
        (``site=berlin,hw in (pi4,pi5)``). Pre-registered devices that never connected show
        ``seen: false``."""
        return runner.devices.list(selector)

    @router.get(f"{API}/devices/{{device_id}}")
    def get_device(device_id: str) -> dict[str, Any]:
        return runner.devices.show(device_id)

    @router.post(f"{API}/devices", status_code=201, dependencies=admin)
    def register_device(body: RegisterRequest, actor: Actor) -> dict[str, Any]:
        """Pre-register a device (with operator labels) before its first contact."""
        return runner.devices.register(body.device_id, body.labels, actor, body.note)

    @router.patch(f"{API}/devices/{{device_id}}/labels", dependencies=admin)
    def set_labels(device_id: str, body: LabelsRequest, actor: Actor) -> dict[str, Any]:
        """Set operator labels (they override the device's own) and remove operator labels."""
        return runner.devices.set_labels(device_id, body.set, body.remove, actor)

    # -- audit log -------------------------------------------------------------------------------

    @router.get(f"{API}/audit")
    def audit(rollout: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
              device: Annotated[str | None, Query(max_length=128)] = None,
              action: Annotated[str | None, Query(max_length=64)] = None,
              before: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:
        """Newest first. ``next`` is the ``before`` value of the following page (null: no more).
        ``action`` matches a prefix (``rollout.``, ``device.labels``)."""
        return runner.store.audit(rollout_id=rollout, device_id=device, action=action,
                                  before=before, limit=limit)

    return router
