"""Response models of the deployment views."""

from __future__ import annotations

from typing import Any

from controller.fleet.schemas import OpenModel


class DeploymentProgress(OpenModel):
    deployment_id: str
    model: str
    version: int
    created_at: float
    selector: str | None
    targeted: int
    active: int
    installing: int
    failed: int
    waiting: int
    offline: int
    finished: bool
    failed_devices: list[dict[str, Any]]

