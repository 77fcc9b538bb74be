"""Response models of monitoring's view endpoints, so the OpenAPI document says what each
returns: the drift view (``GET /drift/{model}``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class DriftFigure(BaseModel):
    """One histogram's drift over some windows whose counts were added up first."""

    psi: float | None = Field(description="PSI of the summed counts against the reference; "
                                          "null while too few rows (never 0 for 'unknown')")
    threshold: float | None = Field(description="PSI above which this many rows are drifted")
    n: int = Field(description="rows in the summed histogram")
    drifted: bool | None
    reliable: bool = Field(description="whether there were enough rows for a figure "
                                       "(min_rows_per_bin per reference bin)")


class DriftPoint(DriftFigure):
    ts: float = Field(description="start of the time bucket (windows ending in it)")


class FeatureDrift(BaseModel):
    name: str = Field(description='feature name, or "(prediction)" for the model output')
    kind: Literal["feature", "prediction"]
    bins: int = Field(description="reference bins (classes for a classifier's prediction)")
    min_rows: int = Field(description="rows a bucket needs for a figure")
    points: list[DriftPoint] = Field(description="one per time bucket, oldest first")
    latest: DriftPoint | None = Field(description="the newest bucket with a figure")
    peak: DriftPoint | None = Field(description="the bucket of the highest PSI")
    overall: DriftFigure = Field(description="every window of the range added up")


class NamedDrift(DriftFigure):
    name: str
    kind: Literal["feature", "prediction"]


class WorstDrift(BaseModel):
    name: str
    psi: float | None
    threshold: float | None


class DriftRow(BaseModel):
    """One device or label group over the whole range."""

    key: str = Field(description='device id, or the group\'s label value ("" without it)')
    devices: int
    windows: int
    rows: int = Field(description="rows predicted in its windows")
    last_window_end: float | None
    worst: WorstDrift | None = Field(description="the histogram furthest over its threshold")
    drifted: list[str] = Field(description="histograms judged drifted")
    features: list[NamedDrift]


class DriftBucket(BaseModel):
    ts: float
    windows: int
    devices: int
    rows: int = Field(description="rows predicted in the windows ending in this bucket")


class DriftMarker(BaseModel):
    ts: float = Field(description="when the first of the events happened")
    kind: Literal["version_started", "version_stopped", "rollout_started", "rollout_ended",
                  "deployment", "alert_fired", "alert_cleared"]
    text: str
    count: int = Field(description="events of this kind and subject in this time bucket")
    devices: list[str] = Field(description="the first few devices by name")
    alert_kind: str | None


class DriftSettings(BaseModel):
    psi_eps: float
    drift_base: float
    drift_factor: float
    min_rows_per_bin: int


class DriftView(BaseModel):
    model: str
    version: int
    by: Literal["feature", "device", "group"]
    group_by: str | None
    window_s: float
    start: float
    end: float
    bucket_s: float
    status: Literal["ok", "no_profile", "no_windows"]
    reason: str | None = Field(description="why there are no figures, or what to know about them")
    has_profile: bool
    windows: int = Field(description="metrics windows counted")
    devices: int = Field(description="devices whose windows were counted")
    rows_predicted: int
    skipped: dict[str, int] = Field(description="windows left out, by reason (other_profile: "
                                                "counted against other bins; malformed)")
    truncated: bool = Field(description="too many windows: only the newest were counted")
    settings: DriftSettings | None = Field(description="the drift settings of the newest window")
    buckets: list[DriftBucket]
    features: list[FeatureDrift] = Field(description="by=feature: the furthest over their "
                                                      "threshold first")
    features_total: int
    rows: list[DriftRow] = Field(description="by=device|group: most drifted first")
    rows_total: int
    markers: list[DriftMarker]
