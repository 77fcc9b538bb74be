"""Request and response models of the rollout and deployment endpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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



class RolloutSpecBody(BaseModel):
    """The body of ``POST /rollouts``: the keys of a rollout spec file (docs/rollouts.md).

    It documents the request in the OpenAPI schema; :func:`controller.rollouts.spec_parse.spec_from_dict`
    is the one place that checks it (types, unknown keys, ranges, the waves against the fleet),
    so a refusal names the key and the rule in words, the same for a file, a flag and a request.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["model", "agent"] | None = Field(
        None, description="what the rollout moves devices to: a model version (model, "
        "version) or an agent version (agent_version; gates min_reporting_share and "
        "max_failed_activations only); left out, the target named says it (agent_version: "
        "agent, model: model; naming both or neither is refused)")
    model: str | None = Field(None, description="the registered model's name (kind model)")
    version: int | None = Field(None, description="the version to roll out (kind model; the "
                                "CLI fills in the latest)")
    agent_version: str | None = Field(None, description="a registered agent version (kind "
                                      "agent, `edgewise agent push`)")
    selector: str = Field("", description="which devices, by label: 'site=berlin,hw in "
                          "(pi4,pi5),!canary'; empty: every device")
    waves: str | list[str | int] = Field("1,10%,50%,100%", description="cumulative wave sizes, "
                                         "device counts or percentages")
    soak_seconds: float | list[float] = Field(600.0, description="how long each wave must stay "
                                              "healthy before the next; one value per wave allowed")
    gates: dict[str, float | int | str | None] = Field(
        default_factory=dict, description="min_reporting_share (0.9), max_failed_activations "
        "(0; a count, a share or '5%'), max_accuracy_drop, max_p95_latency_ms, max_drift_psi, "
        "max_memory_increase, max_cpu_increase ('25%' or 0.25: how much more the new version "
        "may cost than the previous one on the same devices) (off), min_labelled (30)")
    on_gate_failure: Literal["pause", "abort"] = Field(
        "pause", description="stop and wait for a human, or send every moved device back")
    priority: int = Field(0, description="a higher priority takes devices over from a live "
                          "rollout of a lower one")
    wave_timeout_seconds: float = Field(3600.0, description="how long a wave may take to report "
                                        "or a gate to gather evidence")
    name: str = Field("", description="a name (default MODEL:VERSION)")
    probation: dict[str, float | int] | None = Field(
        None, description="duration_s, max_error_rate, max_p95_latency_ms, min_predictions: the "
        "health window each device keeps the new version under before it commits it")


class SkippedDevice(BaseModel):
    device_id: str
    device_class: str = Field(description="the class the device reports")
    reason: str = Field(description="'other_class: ...'")


class DeploymentCreated(BaseModel):
    deployment_id: str
    model: str
    version: int
    devices: list[str] = Field(description="the devices whose desired model was set")
    device_class: str | None = Field(None, description="the device class the version is for "
                                     "(null: any)")
    skipped: list[SkippedDevice] = Field(
        default_factory=list, description="devices left out: known to be of another class "
        "than the version's")
