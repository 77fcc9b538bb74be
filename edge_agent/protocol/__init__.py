"""The Edgewise wire protocol: topics, message schemas and the model manifest.

Used by both sides; documented in ``docs/protocol.md``.
"""

from edge_agent.protocol.errors import PayloadTooLarge, ProtocolError, SchemaError, TopicError
from edge_agent.protocol.manifest import (
    ArtifactRef,
    Manifest,
    ProbationPolicy,
    SmokeTest,
    TensorSpec,
)
from edge_agent.protocol.messages import (
    Ack,
    ArtifactRequest,
    Desired,
    Message,
    ModelRef,
    Presence,
    Reported,
    TelemetryBatch,
    decode,
    encode,
)

__all__ = [
    "Ack",
    "ArtifactRef",
    "ArtifactRequest",
    "Desired",
    "Manifest",
    "Message",
    "ModelRef",
    "PayloadTooLarge",
    "Presence",
    "ProbationPolicy",
    "ProtocolError",
    "Reported",
    "SchemaError",
    "SmokeTest",
    "TelemetryBatch",
    "TensorSpec",
    "TopicError",
    "decode",
    "encode",
]
