"""Response models of the fleet's view endpoints, so the OpenAPI document says what each returns.

Row models allow extra fields (:class:`OpenModel`): a column another part of the controller adds
to a device shows up in the API without an edit here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class OpenModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class DeviceOut(OpenModel):
    device_id: str
    online: bool
    first_seen: float
    last_seen: float
    labels: dict[str, str] = Field(description="effective labels: the operator's over the device's")
    state: str | None = Field(description="update state the agent last reported")
    agent_version: str
    device_class: str | None = Field(None, description="the class the agent reports "
                                     "(agent.toml's device_class); null until a device "
                                     "reports one (older agents do not)")
    active_model: str | None
    active_version: int | None
    active_sha256: str | None
    target_model: str | None
    target_version: int | None
    staged_model: str | None = Field(description="verified artifact waiting in the standby "
                                                 "slot, to be activated")
    staged_version: int | None
    staged_sha256: str | None
    previous_model: str | None = Field(description="model kept in the previous slot: an "
                                                   "instant rollback goes back to it")
    previous_version: int | None
    previous_sha256: str | None
    reported_deployment_id: str | None
    desired_model: str | None
    desired_version: int | None
    desired_deployment_id: str | None
    last_error: str | None
    progress: list[int] | None = Field(description="[chunks verified, chunks in the artifact]")
    dropped_total: int
    predictions: int = Field(description="prediction records stored, all time")
    feedback: int = Field(description="labelled predictions, all time")
    accuracy: float | None = Field(description="all-time accuracy on labelled predictions")


class DevicePage(BaseModel):
    items: list[DeviceOut]
    total: int = Field(description="devices matching the filters, on all pages")
    limit: int
    offset: int


class HistoryEntry(BaseModel):
    ts: float = Field(description="the device's time of the report")
    recorded_at: float
    state: str | None
    model: str | None = Field(description="active model after the change")
    version: int | None
    sha256: str | None
    target_model: str | None
    target_version: int | None
    deployment_id: str | None
    error: str | None


class ErrorEntry(BaseModel):
    ts: float
    source: str = Field(description="inference (a failed prediction) or update (a failed install)")
    model: str | None
    version: int | None
    message: str | None


class Figures(OpenModel):
    predictions: int
    errors: int
    labelled: int
    accuracy: float | None
    mean_latency_ms: float | None
    max_latency_ms: float | None


class SeriesPoint(Figures):
    ts: float = Field(description="start of the bucket")
    drift_psi: float | None = Field(description="worst PSI of the metrics windows ending here")
    p95_latency_ms: float | None


class Series(BaseModel):
    start: float
    end: float
    bucket_s: float
    drift_available: bool = Field(description="whether any metrics window fell in the range")
    metrics_windows: int
    points: list[SeriesPoint]


class VersionInUse(BaseModel):
    model: str
    version: int
    devices: int
    online: int


class GroupHealth(Figures):
    group: str = Field(description='value of the grouping label ("" for devices without it)')
    devices: int
    online: int
    offline: int
    failed: int
    versions: dict[str, int]
    drift_psi: float | None
    drifting: int | None


class Alerts(BaseModel):
    available: bool = Field(description="false when this controller has no alert store")
    count: int
    firing: list[dict[str, Any]]


class Overview(BaseModel):
    generated_at: float
    window_s: float
    group_by: str
    devices: int
    online: int
    offline: int
    states: dict[str, int]
    versions: list[VersionInUse]
    figures: dict[str, Any]
    drift_available: bool
    groups: list[GroupHealth]
    label_keys: list[str]
    alerts: Alerts



class Count(BaseModel):
    count: int
