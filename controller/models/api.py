"""``/models``: the registry over REST. List and show models, a version's manifest, each
version's parity, placement and figures (``/summary``), and upload a new version (the CLI's
``models push`` converts locally first; the controller checks the manifest and the artifact's
hash and size before it stores anything).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Path, Query, Response, UploadFile

from controller.errors import NotFoundError
from controller.fleet.selectors import DEFAULT_GROUP_LABEL
from controller.models.names import check_model_name
from controller.models.queries import ModelViews
from controller.models.registry import ModelRegistry
from controller.models.schemas import ModelOut, ModelSummary, ModelVersions, PushedVersion
from controller.rest import (
    API,
    MAX_JSON_DEPTH,
    PAGED,
    TOTAL_HEADER,
    GroupBy,
    Limit,
    Offset,
    Window,
    in_thread,
    json_too_deep,
)
from edgewise_wire import Manifest, SchemaError
from edgewise_wire.manifest import MAX_ARTIFACT_SIZE

# the largest artifact an upload may carry (the manifest's own limit); it is streamed to disk
# in blocks of UPLOAD_BLOCK bytes, so this bounds disk use, not memory
MAX_ARTIFACT_UPLOAD = MAX_ARTIFACT_SIZE
UPLOAD_BLOCK = 1024 * 1024

# (name, now, window, group_by, placement per version) -> the summary the fleet health views
# build (controller/web/health.py)
ModelSummarySource = Callable[[str, float, float, str, dict[int, dict[str, Any]]], dict[str, Any]]


def models_router(registry: ModelRegistry, views: ModelViews, summary: ModelSummarySource,
                  require_admin: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix=f"{API}/models", tags=["models"])
    admin = [Depends(require_admin)]
    run = in_thread

    @router.get("", response_model=list[ModelOut], responses=PAGED)
    async def list_models(
        response: Response, limit: Limit = None, offset: Offset = 0,
        q: Annotated[str | None, Query(max_length=128, description="part of the name")] = None,
    ) -> list[dict[str, Any]]:
        """Registered models with their version counts, paged; total in X-Total-Count."""
        rows, total = await run(views.list_models, q, limit, offset)
        response.headers[TOTAL_HEADER] = str(total)
        return rows

    @router.get("/{name}", response_model=ModelVersions)
    def get_model(name: str) -> dict[str, Any]:
        versions = registry.list_versions(name)
        if not versions:
            raise NotFoundError("model", name)
        return {"name": name, "versions": versions}

    @router.get("/{name}/summary", response_model=ModelSummary)
    async def model_summary(name: str, window: Window = 3600,
                            group_by: GroupBy = DEFAULT_GROUP_LABEL) -> dict[str, Any]:
        """Every version with its conversion parity, where it runs (per label group) and how
        it does there over the last ``window`` seconds."""
        def build() -> dict[str, Any]:
            return summary(name, time.time(), window, group_by, views.version_placement(name))
        return await run(build)

    @router.get("/{name}/versions/{version}/manifest")
    def get_manifest(name: str, version: Annotated[int, Path(ge=0, le=2**31 - 1)]) -> dict[str, Any]:
        return registry.get_manifest(name, version).to_dict()

    @router.post("/{name}/versions", status_code=201, dependencies=admin,
                 response_model=PushedVersion)
    async def push_version(name: str, manifest: Annotated[str, Form()],
                           artifact: Annotated[UploadFile, File()]) -> dict[str, Any]:
        check_model_name(name)  # ValidationError: 422 with the rule
        if json_too_deep(manifest):  # json.loads recurses: checked before it runs
            raise HTTPException(422, f"manifest is not valid: it nests deeper than "
                                     f"{MAX_JSON_DEPTH} levels")
        try:
            parsed = Manifest.from_dict(json.loads(manifest))
        except (json.JSONDecodeError, SchemaError) as exc:
            raise HTTPException(422, f"manifest is not valid: {exc}") from None
        if parsed.model != name:
            raise HTTPException(422, f"manifest is for model {parsed.model!r}, not {name!r}")
        await run(registry.check, parsed)  # name and manifest, before the artifact is copied
        staged = await run(registry.store.stage, parsed.artifact.chunk_size)
        try:
            # streamed to disk in bounded pieces, hashed on the way: memory stays flat
            # whatever the artifact's size (it was once held whole, and the controller's resident
            # size grew by more than the artifact)
            while block := await artifact.read(UPLOAD_BLOCK):
                if staged.digest.size + len(block) > MAX_ARTIFACT_UPLOAD:
                    raise HTTPException(413, f"artifact larger than {MAX_ARTIFACT_UPLOAD} bytes")
                await run(staged.write, block)
            await run(staged.close)
        except BaseException:
            staged.discard()
            raise
        stored = await run(registry.register_staged, parsed, staged)
        return {"model": stored.model, "version": stored.version,
                "sha256": stored.artifact.sha256, "size": stored.artifact.size}

    return router
