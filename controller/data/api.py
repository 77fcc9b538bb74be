"""REST: ``GET /api/v1/data/export`` streams an export (Parquet or CSV) as it is read;
``POST /api/v1/data/retention`` applies a retention policy and says what it deleted."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from controller.data.export import Exporter
from controller.data.export_query import ExportQuery, parse_sampling
from controller.data.export_writers import FORMATS, stream
from controller.data.retention import apply_retention
from controller.errors import ValidationError
from controller.rest import API
from controller.storage.db import Database
from edgewise_wire import Manifest

MEDIA = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}


class RetentionIn(BaseModel):
    days: float | None = None
    rows: int | None = None


def data_router(db: Database, manifest_of: Callable[[str, int | None], Manifest],
                admin: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix=f"{API}/data", tags=["data"])

    @router.get("/export")
    def export(model: str, version: int | None = None, since: float | None = None,
               selector: str | None = None, labelled_only: bool = False,
               format: str = Query("parquet"),  # noqa: A002
               sample: float | None = None, sample_by: str | None = None,
               sample_share: list[str] = Query(default=[]),  # noqa: B008
               seed: int = 0) -> StreamingResponse:
        """The model's predictions as a training set (docs/cli.md, `edgewise data export`),
        streamed record batch by record batch; ``sample`` (and a ``sample_share`` of
        ``GROUP=SHARE`` per group of the device label ``sample_by``) keeps that share of each
        group's predictions, the same rows for the same ``seed``. 404: unknown model or
        version; 422: nothing matched, a bad selector, format or share."""
        if format not in FORMATS:
            raise ValidationError(f"format {format!r} is not one of {', '.join(FORMATS)}")
        sampling = parse_sampling(sample, sample_by, sample_share, seed)
        manifest = manifest_of(model, version)
        q = ExportQuery(model, version, since, selector, labelled_only, sampling)
        chunks = stream(Exporter(db, manifest, q), format)
        first = next(chunks)  # errors (nothing matched) before the response starts

        def body() -> Iterator[bytes]:
            yield first
            yield from chunks

        name = f"{model}{'-v' + str(version) if version is not None else ''}.{format}"
        return StreamingResponse(body(), media_type=MEDIA[format],
                                 headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @router.post("/retention", dependencies=[Depends(admin)])
    def retention(body: RetentionIn) -> dict[str, Any]:
        """Delete telemetry older than ``days`` and beyond the newest ``rows``; the counts."""
        r = apply_retention(db, days=body.days, max_rows=body.rows, now=time.time())
        return {"deleted_by_age": r.deleted_by_age, "deleted_by_rows": r.deleted_by_rows,
                "deleted": r.deleted, "kept": r.kept, "cutoff_ts": r.cutoff_ts}

    return router
