"""``/agent-versions``: register an agent bundle (a prepared agent archive for the devices'
launcher), list them, and read one's manifest."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile
from pydantic import BaseModel, Field

from controller.agent_bundles.deploy import AgentDeployer
from controller.agent_bundles.registry import AgentBundles
from controller.agent_bundles.schemas import AgentVersionOut, PushedAgentVersion
from controller.models.api import MAX_ARTIFACT_UPLOAD
from controller.rest import API

VersionForm = Annotated[str, Form(min_length=1, max_length=64)]


class AgentDeployIn(BaseModel):
    devices: list[str] | None = Field(
        default=None, max_length=100_000,
        description="device ids (all valid or none taken); null: every known device")


def agent_versions_router(bundles: AgentBundles, deployer: AgentDeployer,
                          require_admin: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix=f"{API}/agent-versions", tags=["agent versions"])

    @router.get("", response_model=list[AgentVersionOut])
    def list_versions() -> list[dict[str, Any]]:
        """Registered agent versions, oldest first."""
        return bundles.list_versions()

    @router.get("/{version}/manifest")
    def get_manifest(version: str) -> dict[str, Any]:
        return bundles.get(version).to_dict()

    @router.post("", status_code=201, dependencies=[Depends(require_admin)],
                 response_model=PushedAgentVersion)
    async def push(version: VersionForm, archive: Annotated[UploadFile, File()]) -> dict[str, Any]:
        data = await archive.read(MAX_ARTIFACT_UPLOAD + 1)
        if len(data) > MAX_ARTIFACT_UPLOAD:
            raise HTTPException(413, f"agent bundle larger than {MAX_ARTIFACT_UPLOAD} bytes")
        manifest, new = await asyncio.to_thread(bundles.register, version, data)
        return {"version": manifest.version, "sha256": manifest.artifact.sha256,
                "size": manifest.artifact.size, "chunks": manifest.artifact.chunk_count,
                "new": new}

    @router.post("/{version}/deploy", dependencies=[Depends(require_admin)])
    async def deploy(version: str, body: AgentDeployIn) -> dict[str, Any]:
        """Send agent ``version`` (signed) to the devices' ``agent/desired`` channel."""
        return await deployer.deploy(version, body.devices)

    return router
