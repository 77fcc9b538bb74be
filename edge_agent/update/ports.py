"""What the updater needs from around it, and nothing more: two small ports.

:class:`UpdateHost` is the device the updater runs on (the agent: what serves, and the report
it sends); :class:`ChunkLink` is the part of the MQTT link the chunked download uses
(:class:`~edgewise_mqtt.link.MqttLink` has it). Typing only: nothing here runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from edgewise_wire.messages import ModelRef

if TYPE_CHECKING:
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
