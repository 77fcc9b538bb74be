"""The updater's boundary: what it needs from around it, and nothing more, and what it reports.

:class:`UpdateHost` is the device the updater runs on (the agent: what serves, and the report
it sends); :class:`ChunkLink` is the part of the MQTT link the chunked download uses
(:class:`~edgewise_mqtt.link.MqttLink` has it); :class:`UpdateSettings` are the configuration
values it uses. :class:`UpdateReport` is what it tells the agent to report. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from edgewise_wire.message_base import ModelRef
from edgewise_wire.topics import ROOT

if TYPE_CHECKING:
    from edge_agent.config import AgentConfig
    from edge_agent.runtime import InferenceRuntime
    from edge_agent.slots import Slot


class UpdateHost(Protocol):
    @property
    def active(self) -> ModelRef | None:
        """The model that serves now (None: none)."""

    @property
    def runtime(self) -> InferenceRuntime | None:
        """The runtime that serves now (reused instead of loading its file again)."""

    def serve(self, slot: Slot | None, runtime: InferenceRuntime | None, *,
              deployment_id: str | None = None) -> None:
        """Serve ``runtime`` (the model in ``slot``) from now on; None serves nothing."""

    def report(self) -> None:
        """Send the reported state now (the updater's :meth:`report_fields` among it)."""


class ChunkLink(Protocol):
    @property
    def connected(self) -> bool: ...

    async def subscribe_and_wait(self, topic: str, qos: int = 1, timeout: float = 10.0) -> None:
        ...

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        ...

    def unsubscribe(self, topic: str) -> None: ...


@dataclass(frozen=True)
class UpdateSettings:
    """The configuration values the update path uses (from :class:`AgentConfig`)."""

    device_id: str
    data_dir: Path
    trusted_keys: tuple[str, ...] = ()
    device_class: str = "generic"
    max_model_bytes: int | None = None
    probation_s: float = 0.0
    chunk_repair_interval_s: float = 3.0
    artifact_http: bool = True  # fetch from a manifest's artifact URL before MQTT chunks
    topic_root: str = ROOT

    @classmethod
    def from_config(cls, config: AgentConfig) -> UpdateSettings:
        return cls(config.device_id, config.data_dir, config.trusted_keys, config.device_class,
                   config.max_model_bytes, config.probation_s, config.chunk_repair_interval_s,
                   config.artifact_http, config.topic_root)


@dataclass(frozen=True)
class UpdateReport:
    """What the agent's report says about the update (protocol.md 4.3)."""

    state: str
    target: ModelRef | None
    staged: ModelRef | None
    previous: ModelRef | None
    last_error: str | None
    progress: tuple[int, int] | None
    deployment_id: str | None  # of the desired state the update carries out, if any
