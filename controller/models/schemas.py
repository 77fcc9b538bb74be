"""Response models of the model views (``GET /models``, ``GET /models/{name}/summary``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from controller.fleet.schemas import OpenModel


class ModelOut(OpenModel):
    name: str
    task: str
    created_at: float
    versions: int
    latest_version: int | None


class VersionSummary(OpenModel):
    version: int
    sha256: str
    size: int
    format: str
    created_at: float
    precision: str
    device_class: str | None = Field(None, description="the device class the version is "
                                     "built for and signed for; null: any class")
    parity: dict[str, Any] = Field(description="conversion parity figures from the manifest")
    source: dict[str, Any]
    running: int
    online: int
    desired: int
    installing: int
    failed: int
    groups: dict[str, int]
    figures: dict[str, Any]


class ModelSummary(BaseModel):
    name: str
    task: str | None
    window_s: float
    group_by: str
    drift_available: bool
    versions: list[VersionSummary]



class VersionOut(BaseModel):
    model: str
    version: int
    sha256: str
    size: int
    format: str
    created_at: float


class ModelVersions(BaseModel):
    name: str
    versions: list[VersionOut]


class PushedVersion(BaseModel):
    model: str
    version: int
    sha256: str
    size: int = Field(description="artifact bytes")
