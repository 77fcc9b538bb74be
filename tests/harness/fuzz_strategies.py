"""Hypothesis strategies for MQTT input: random bytes, random JSON, valid messages with random
damage, oversized payloads, and the topics each side listens to (and some it does not)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

from edgewise_wire.message_base import MAX_CONTROL_BYTES
from edgewise_wire.topics import DeviceChannel, chunk_topic, device_topic

JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**62)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                                  max_size=5),
    max_leaves=25)
SHA = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
OVERSIZED = b'{"schema":1,"type":"x","pad":"' + b"x" * MAX_CONTROL_BYTES + b'"}'


def _slots(doc: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) in a JSON document, nested ones included."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield doc, key
            yield from _slots(value)
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield doc, index
            yield from _slots(value)


@st.composite
def damaged(draw: st.DrawFn, valid: dict[str, Any]) -> bytes:
    """``valid`` with 1-3 fields replaced by random JSON, deleted, or left as they were."""
    doc = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        slots = list(_slots(doc))
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["replace", "replace", "delete", "keep"]))
        if action == "replace":
            container[key] = draw(JSON_VALUES)
        elif action == "delete":
            del container[key]
    return json.dumps(doc).encode()  # NaN and infinities go out as the JSON extension


def payloads(valid: list[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        st.sampled_from(valid).flatmap(damaged),
        st.sampled_from(valid).map(lambda v: json.dumps(v).encode()),  # valid, for contrast
        st.just(OVERSIZED),
        st.just(b""),
    )


# what a broker accepts as a PUBLISH topic: no wildcards, no control characters (Mosquitto
# disconnects a client that sends them), nothing under $ (broker-reserved)
MQTT_SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc"),
                                       blacklist_characters="+#"),
                         min_size=1, max_size=60).filter(lambda t: not t.startswith("$"))


def agent_topics(device_id: str, mqtt_safe: bool = False) -> st.SearchStrategy[str]:
    """What the agent subscribes to (its desired, its ack, chunk topics), neighbours of it,
    and random strings."""
    own = st.sampled_from([device_topic(device_id, DeviceChannel.DESIRED),
                           device_topic(device_id, DeviceChannel.ACK)])
    chunks = st.builds(chunk_topic, SHA, st.integers(0, 10**6))
    neighbours = st.sampled_from(
        [device_topic(device_id, c) for c in DeviceChannel]
        + [device_topic("someone-else", DeviceChannel.DESIRED), "ew/v1/art/x/1",
           f"ew/v1/dev/{device_id}/desired/extra", "ew/v2/dev/x/desired"])
    junk = MQTT_SAFE_TEXT if mqtt_safe else st.text(max_size=80)
    return st.one_of(own, own, chunks, neighbours, junk)


def controller_topics(mqtt_safe: bool = False) -> st.SearchStrategy[str]:
    ids = st.sampled_from(["fuzz-dev", "fuzz-2", "x"]) | st.from_regex(
        r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
    channel = st.sampled_from([c for c in DeviceChannel])
    valid = st.builds(device_topic, ids, channel)
    bad_id = st.builds(lambda i, c: f"ew/v1/dev/{i}/{c.value}",
                       MQTT_SAFE_TEXT.filter(lambda t: "/" not in t), channel)
    chunks = st.builds(chunk_topic, SHA, st.integers(0, 10**6))
    junk = MQTT_SAFE_TEXT if mqtt_safe else st.text(max_size=80)
    return st.one_of(valid, valid, valid, bad_id, chunks, junk)
