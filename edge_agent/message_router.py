"""Each MQTT message the agent receives, handed to the part that handles it.

The topic says what a message is: the fleet's key update, a chunk of a model or of an agent
bundle, or one of this device's channels, whose payload is decoded into the message the channel
carries (:data:`CHANNEL_MESSAGES`). A payload that does not decode is dropped as ``malformed``,
a topic the agent has no handler for as ``unexpected_topic``; the agent counts both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from edgewise_wire import (
    Ack,
    Desired,
    DesiredAgent,
    LogsRequest,
    ProtocolError,
    SamplingOrder,
    decode,
)
from edgewise_wire.experiments import ExperimentOrder
from edgewise_wire.key_update import KeyUpdateMessage
from edgewise_wire.topics import ChunkTopic, DeviceChannel, DeviceTopic, keys_topic, parse_topic

# what each device channel the agent reads carries
CHANNEL_MESSAGES: dict[DeviceChannel, type[Any]] = {
    DeviceChannel.DESIRED: Desired,
    DeviceChannel.ACK: Ack,
    DeviceChannel.AGENT_DESIRED: DesiredAgent,
    DeviceChannel.LOGS_REQUEST: LogsRequest,
    DeviceChannel.EXPERIMENT: ExperimentOrder,
    DeviceChannel.SAMPLING: SamplingOrder,
}

ChunkHandler = Callable[[ChunkTopic, bytes], None]


class AgentChunks(Protocol):
    """The agent's self-update, which claims the chunks of the agent bundle it fetches."""

    def owns_chunk(self, chunk: ChunkTopic) -> bool: ...

    def on_chunk(self, chunk: ChunkTopic, payload: bytes) -> None: ...


class MessageRouter:
    """``handlers``: one per device channel the agent handles, called with the decoded message;
    a channel without one is an unexpected topic. ``model_chunks``: every receiver of model
    chunks (each takes the chunks it waits for); ``agent_chunks``: the self-update, when the
    agent has one, which takes its chunks first. ``drop(reason, detail)`` counts a dropped
    message."""

    def __init__(self, device_id: str, *, root: str,
                 on_key_update: Callable[[KeyUpdateMessage], None],
                 model_chunks: Sequence[ChunkHandler], agent_chunks: AgentChunks | None,
                 handlers: Mapping[DeviceChannel, Callable[[Any], None]],
                 drop: Callable[[str, str], None]) -> None:
        unknown = set(handlers) - set(CHANNEL_MESSAGES)
        if unknown:
            raise ValueError(f"no message type for channels {sorted(c.value for c in unknown)}")
        self.device_id = device_id
        self.root = root
        self.keys_topic = keys_topic(root=root)
        self._on_key_update = on_key_update
        self._model_chunks = tuple(model_chunks)
        self._agent_chunks = agent_chunks
        self._handlers = dict(handlers)
        self._drop = drop
        # of the messages dropped as malformed, those on the ack topic (acks that deleted
        # nothing: no epoch, no range)
        self.malformed_acks = 0

    def on_message(self, topic: str, payload: bytes) -> None:
        """The link's callback for every message received."""
        try:
            if topic == self.keys_topic:
                self._on_key_update(decode(payload, KeyUpdateMessage))
                return
            parsed = parse_topic(topic, root=self.root)
            if isinstance(parsed, ChunkTopic):
                self._on_chunk(parsed, payload)
            elif isinstance(parsed, DeviceTopic) and parsed.device_id == self.device_id:
                self._on_channel(parsed.channel, topic, payload)
            else:
                self._drop("unexpected_topic", topic)
        except ProtocolError as exc:
            self._drop("malformed", f"{topic}: {exc}")

    def _on_chunk(self, chunk: ChunkTopic, payload: bytes) -> None:
        agent_chunks = self._agent_chunks
        if agent_chunks is not None and agent_chunks.owns_chunk(chunk):
            agent_chunks.on_chunk(chunk, payload)
            return
        for handle in self._model_chunks:
            handle(chunk, payload)

    def _on_channel(self, channel: DeviceChannel, topic: str, payload: bytes) -> None:
        handle = self._handlers.get(channel)
        if handle is None:
            self._drop("unexpected_topic", topic)
            return
        try:
            message = decode(payload, CHANNEL_MESSAGES[channel])
        except ProtocolError:
            if channel is DeviceChannel.ACK:
                self.malformed_acks += 1
            raise  # dropped as malformed by on_message
        handle(message)
