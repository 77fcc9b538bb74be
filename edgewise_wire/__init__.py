"""The Edgewise wire contract: topics, message schemas, the model manifest, the signed envelope
and the update states.

Neutral ground: the agent and the controller both import it, and it imports the standard library
only, except PyNaCl in :mod:`edgewise_wire.public_keys` (``tests/unit/test_architecture.py``), so a change to the contract is visibly a change to
both sides and a change to either side never edits it. Documented in ``docs/protocol.md``.
"""

from edgewise_wire.codec import decode, encode
from edgewise_wire.errors import PayloadTooLarge, ProtocolError, SchemaError, TopicError
from edgewise_wire.experiments import ExperimentOrder
from edgewise_wire.manifest import (
    ArtifactRef,
    Manifest,
    ProbationPolicy,
    SmokeTest,
    TensorSpec,
)
from edgewise_wire.message_base import Message, ModelRef
from edgewise_wire.order_messages import Desired, DesiredAgent, SamplingOrder
from edgewise_wire.request_messages import ArtifactRequest, LogsReply, LogsRequest
from edgewise_wire.status_messages import ControllerPresence, Presence, Reported
from edgewise_wire.telemetry_messages import Ack, TelemetryBatch
from edgewise_wire.update_states import UpdateState

__all__ = [
    "Ack",
    "ArtifactRef",
    "ArtifactRequest",
    "ControllerPresence",
    "Desired",
    "DesiredAgent",
    "ExperimentOrder",
    "LogsReply",
    "LogsRequest",
    "SamplingOrder",
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
    "UpdateState",
    "decode",
    "encode",
]
