"""The topic root: its rule, and every builder, wildcard and the parser under a root."""

from __future__ import annotations

import pytest

from edgewise_wire import ControllerPresence, decode, encode
from edgewise_wire.errors import TopicError
from edgewise_wire.topics import (
    ROOT,
    ChunkTopic,
    DeviceChannel,
    DeviceTopic,
    chunk_topic,
    chunk_wildcard,
    controller_presence_topic,
    device_topic,
    device_wildcard,
    keys_topic,
    parse_topic,
    validate_topic_root,
)

SHA = "ab" * 32


@pytest.mark.parametrize("root", ["ew/v1", "acme", "acme/ew/v1", "t-1/fleet_2/v.3",
                                  "/".join("s" for _ in range(8)), "x" * 64])
def test_valid_roots_are_accepted(root: str) -> None:
    assert validate_topic_root(root) == root


@pytest.mark.parametrize("root", ["", "/", "/ew/v1", "ew/v1/", "ew//v1", "ew/+/v1", "ew/#",
                                  "#", "+", "$SYS/ew", "$share/g/ew", "ew/$x", "ew v1",
                                  "ew/v\u00e9", "ew/v1\x00", "/".join("s" for _ in range(9)),
                                  "x" * 65])
def test_invalid_roots_are_refused_with_the_rule(root: str) -> None:
    with pytest.raises(TopicError, match="invalid topic root.*segments"):
        validate_topic_root(root)


def test_a_root_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(TopicError, match="invalid topic root"):
        validate_topic_root(None)  # type: ignore[arg-type]


def test_the_default_root_is_unchanged() -> None:
    assert ROOT == "ew/v1"
    assert device_topic("pi-01", DeviceChannel.DESIRED) == "ew/v1/dev/pi-01/desired"
    assert keys_topic() == "ew/v1/trust/keys"
    assert controller_presence_topic() == "ew/v1/controller/presence"


@pytest.mark.parametrize("channel", list(DeviceChannel), ids=lambda c: c.value)
def test_device_topics_under_a_root_round_trip(channel: DeviceChannel) -> None:
    topic = device_topic("pi-01", channel, root="acme/ew/v1")
    assert topic == f"acme/ew/v1/dev/pi-01/{channel.value}"
    assert parse_topic(topic, root="acme/ew/v1") == DeviceTopic("pi-01", channel)
    assert device_wildcard(channel, root="acme/ew/v1") == f"acme/ew/v1/dev/+/{channel.value}"


def test_chunk_topics_under_a_root_round_trip() -> None:
    topic = chunk_topic(SHA, 3, root="acme")
    assert topic == f"acme/art/{SHA}/3"
    assert parse_topic(topic, root="acme") == ChunkTopic(SHA, 3)
    assert chunk_wildcard(SHA, root="acme") == f"acme/art/{SHA}/+"


def test_fleet_wide_topics_under_a_root() -> None:
    assert keys_topic(root="acme/ew/v1") == "acme/ew/v1/trust/keys"
    assert controller_presence_topic(root="acme/ew/v1") == "acme/ew/v1/controller/presence"


def test_a_topic_of_another_root_is_not_parsed() -> None:
    other = device_topic("pi-01", DeviceChannel.DESIRED, root="globex/ew/v1")
    with pytest.raises(TopicError, match="not under acme/ew/v1/"):
        parse_topic(other, root="acme/ew/v1")
    with pytest.raises(TopicError, match="not under ew/v1/"):
        parse_topic(other)
    # a root that is a prefix of another root's first segment is not that root
    with pytest.raises(TopicError):
        parse_topic(device_topic("pi-01", DeviceChannel.DESIRED, root="ew/v10"))


@pytest.mark.parametrize("build", [
    lambda r: device_topic("pi-01", DeviceChannel.DESIRED, root=r),
    lambda r: device_wildcard(DeviceChannel.TELEMETRY, root=r),
    lambda r: chunk_topic(SHA, 0, root=r),
    lambda r: chunk_wildcard(SHA, root=r),
    lambda r: keys_topic(root=r),
    lambda r: controller_presence_topic(root=r),
    lambda r: parse_topic(f"{r}/dev/pi-01/desired", root=r),
])
def test_no_topic_is_built_or_parsed_under_an_invalid_root(build: object) -> None:
    with pytest.raises(TopicError, match="invalid topic root"):
        build("ew/#")  # type: ignore[operator]


def test_controller_presence_round_trips() -> None:
    message = ControllerPresence("ctl-0123456789ab", online=True, replica="host-1-abc",
                                 started_at=1736935100.0, ts=1736935200.25)
    assert decode(encode(message), ControllerPresence) == message
    offline = decode(b'{"schema": 1, "type": "controller_presence", "instance": "ctl-1", '
                     b'"online": false, "ts": 1.0}', ControllerPresence)
    assert offline == ControllerPresence("ctl-1", online=False, replica="", started_at=0.0,
                                         ts=1.0)
