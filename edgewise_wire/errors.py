"""Precise errors raised when a topic or a payload is not what the protocol allows."""


class ProtocolError(ValueError):
    """Base class: a message that must be dropped (and counted), never acted upon."""


class TopicError(ProtocolError):
    """A topic that is not part of the Edgewise layout."""


class PayloadTooLarge(ProtocolError):
    """A payload over the size bound for its message type; refused before parsing."""


class SchemaError(ProtocolError):
    """A payload that parsed but does not match the message schema."""
