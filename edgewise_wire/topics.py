"""The one place where Edgewise topic strings are built and parsed.

Nothing else in the code base formats a topic inline: both the agent and the
controller call these functions, so a change of layout is a change here only.

Layout under a topic root (default ``ew/v1``; each fleet on a shared broker has its own, set
by ``topic_root`` on both sides and checked by :func:`validate_topic_root`)::

    {root}/dev/{device_id}/desired      controller -> agent   retained
    {root}/dev/{device_id}/agent/desired controller -> agent  retained (agent version to run)
    {root}/dev/{device_id}/reported     agent -> controller   retained
    {root}/dev/{device_id}/presence     agent -> controller   retained, last will
    {root}/dev/{device_id}/telemetry    agent -> controller
    {root}/dev/{device_id}/ack          controller -> agent
    {root}/dev/{device_id}/art/req      agent -> controller
    {root}/dev/{device_id}/logs/req     controller -> agent   (recent log lines, please)
    {root}/dev/{device_id}/logs         agent -> controller   (the reply)
    {root}/dev/{device_id}/experiment   controller -> agent   retained (a shadow or A/B order)
    {root}/dev/{device_id}/sampling     controller -> agent   retained (the share of prediction
                                        records its group keeps)
    {root}/art/{sha256}/{chunk_index}   controller -> agents (broadcast)
    {root}/trust/keys                   controller -> agents  retained (signing keys to trust)
    {root}/controller/presence          controller -> controllers  retained, last will (which
                                        controller runs this root)

Every builder, wildcard and the parser take the root as the keyword ``root``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import Enum

from edgewise_wire.errors import TopicError

ROOT = "ew/v1"

_ROOT_SEGMENT = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_MAX_ROOT_SEGMENTS = 8
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK_INDEX = re.compile(r"^[0-9]{1,9}$")


class DeviceChannel(str, Enum):
    """The per-device topics, named by what travels on them."""

    DESIRED = "desired"
    AGENT_DESIRED = "agent/desired"
    REPORTED = "reported"
    PRESENCE = "presence"
    TELEMETRY = "telemetry"
    ACK = "ack"
    ARTIFACT_REQUEST = "art/req"
    LOGS_REQUEST = "logs/req"
    LOGS = "logs"
    EXPERIMENT = "experiment"
    SAMPLING = "sampling"


DEVICE_ID_RULE = ("1-64 characters of letters, digits, '_', '-' or '.', starting with a letter "
                  "or digit")


def validate_device_id(device_id: str) -> str:
    """Return ``device_id`` if it is safe to put in a topic and a file name: the one device id
    rule, used by the agent, the controller's REST API, CLI, registry and PKI alike."""
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        shown = device_id[:80] + "..." if isinstance(device_id, str) and len(device_id) > 80 \
            else device_id
        raise TopicError(f"invalid device id {shown!r}: use {DEVICE_ID_RULE}")
    return device_id


TOPIC_ROOT_RULE = (f"1-{_MAX_ROOT_SEGMENTS} segments separated by '/', each of letters, digits, "
                   "'_', '-' or '.' (no wildcards '+' '#', no leading '$', no empty segment, "
                   "no leading or trailing '/'), e.g. 'ew/v1' or 'acme/ew/v1'")


def validate_topic_root(root: str) -> str:
    """Return ``root`` if every Edgewise topic can live under it: the one topic root rule, used
    by the agent's and the controller's configuration and the broker ACL generator."""
    if not isinstance(root, str) or not _is_topic_root(root):
        shown = root[:80] + "..." if isinstance(root, str) and len(root) > 80 else root
        raise TopicError(f"invalid topic root {shown!r}: use {TOPIC_ROOT_RULE}")
    return root


@functools.lru_cache(maxsize=64)
def _is_topic_root(root: str) -> bool:
    # cached: every topic built is checked, and a process uses one or two roots
    segments = root.split("/")
    return (not root.startswith("$") and len(segments) <= _MAX_ROOT_SEGMENTS
            and all(_ROOT_SEGMENT.fullmatch(s) for s in segments))


def validate_sha256(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise TopicError(f"invalid sha256 {sha256!r}: expected 64 lower-case hex digits")
    return sha256


def device_topic(device_id: str, channel: DeviceChannel, *, root: str = ROOT) -> str:
    return f"{validate_topic_root(root)}/dev/{validate_device_id(device_id)}/{channel.value}"


def device_wildcard(channel: DeviceChannel, *, root: str = ROOT) -> str:
    """Subscription filter for one channel of every device (used by the controller)."""
    return f"{validate_topic_root(root)}/dev/+/{channel.value}"


def chunk_topic(sha256: str, index: int, *, root: str = ROOT) -> str:
    if index < 0:
        raise TopicError(f"chunk index must be >= 0, got {index}")
    return f"{validate_topic_root(root)}/art/{validate_sha256(sha256)}/{index}"


def chunk_wildcard(sha256: str, *, root: str = ROOT) -> str:
    """Subscription filter for every chunk of one artifact (used by an agent downloading it)."""
    return f"{validate_topic_root(root)}/art/{validate_sha256(sha256)}/+"


def keys_topic(*, root: str = ROOT) -> str:
    """The fleet-wide, retained topic of key updates (devices may only read it)."""
    return f"{validate_topic_root(root)}/trust/keys"


def controller_presence_topic(*, root: str = ROOT) -> str:
    """The retained topic where the controller running this root says so (its last will says
    it stopped); a controller checks it at start so two fleets never share one root."""
    return f"{validate_topic_root(root)}/controller/presence"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT shared-subscription filter, to spread a topic over several controller replicas."""
    return f"$share/{group}/{topic_filter}"


@dataclass(frozen=True)
class DeviceTopic:
    device_id: str
    channel: DeviceChannel


@dataclass(frozen=True)
class ChunkTopic:
    sha256: str
    index: int


_CHANNELS = {c.value: c for c in DeviceChannel}


def parse_topic(topic: str, *, root: str = ROOT) -> DeviceTopic | ChunkTopic:
    """Parse an Edgewise topic under ``root``; raise :class:`TopicError` for anything else."""
    prefix = validate_topic_root(root) + "/"
    if not topic.startswith(prefix):
        raise TopicError(f"topic {topic!r} is not under {root}/")
    parts = topic[len(prefix) :].split("/")
    if len(parts) >= 3 and parts[0] == "dev":
        channel = _CHANNELS.get("/".join(parts[2:]))
        if channel is None:
            raise TopicError(f"unknown device channel in topic {topic!r}")
        return DeviceTopic(validate_device_id(parts[1]), channel)
    if len(parts) == 3 and parts[0] == "art":
        sha = validate_sha256(parts[1])
        if not _CHUNK_INDEX.fullmatch(parts[2]):
            raise TopicError(f"chunk index in topic {topic!r} is not a number")
        return ChunkTopic(sha, int(parts[2]))
    raise TopicError(f"unknown topic layout {topic!r}")
