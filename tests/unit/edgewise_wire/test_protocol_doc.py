"""Keeps docs/protocol.md honest against edgewise_wire.

Checked: every device channel appears as a full topic, every message TYPE appears and has at least
one example, and every example block tagged ``<!-- example: TYPE -->`` decodes into that TYPE and
holds exactly what ``encode`` would emit for it (so no field is missing, invented or renamed).
"""

from __future__ import annotations

import json
import re

import pytest

from edgewise_wire import decode, encode
from edgewise_wire.codec import MESSAGE_TYPES, SCHEMA_VERSION
from edgewise_wire.manifest import DEFAULT_CHUNK_SIZE, MANIFEST_SCHEMA, MAX_ARTIFACT_SIZE
from edgewise_wire.message_base import MAX_CONTROL_BYTES, MAX_TELEMETRY_BYTES
from edgewise_wire.telemetry_messages import RECORD_KINDS
from edgewise_wire.topics import ROOT, DeviceChannel
from edgewise_wire.update_states import UPDATE_STATE_NAMES as UPDATE_STATES
from tests.harness.paths import REPO_ROOT

DOC = REPO_ROOT / "docs" / "protocol.md"

_TAG = re.compile(r"<!--\s*example:\s*(?P<type>[^\s>]+)\s*-->")
_TAGGED_BLOCK = re.compile(
    r"<!--\s*example:\s*(?P<type>[^\s>]+)\s*-->[ \t]*\n```json[ \t]*\n(?P<body>.*?)\n```",
    re.DOTALL,
)


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _examples(text: str) -> list[tuple[str, str]]:
    return [(m["type"], m["body"]) for m in _TAGGED_BLOCK.finditer(text)]


def test_every_tag_is_followed_by_a_json_block(doc: str) -> None:
    tags = [m["type"] for m in _TAG.finditer(doc)]
    blocks = [t for t, _ in _examples(doc)]
    assert tags == blocks, "each <!-- example: TYPE --> line needs a ```json block right after"


@pytest.mark.parametrize("channel", list(DeviceChannel), ids=lambda c: c.value)
def test_every_device_channel_is_documented(doc: str, channel: DeviceChannel) -> None:
    assert f"`{channel.value}`" in doc
    assert f"{ROOT}/dev/{{device_id}}/{channel.value}" in doc


def test_chunk_topic_is_documented(doc: str) -> None:
    assert f"{ROOT}/art/{{sha256}}/{{index}}" in doc
    assert f"{ROOT}/art/{{sha256}}/+" in doc


@pytest.mark.parametrize("type_name", sorted(MESSAGE_TYPES))
def test_every_message_type_is_documented_with_an_example(doc: str, type_name: str) -> None:
    assert f"`{type_name}`" in doc
    assert type_name in {t for t, _ in _examples(doc)}, f"no checked example for {type_name!r}"


def test_examples_decode_into_their_type(doc: str) -> None:
    examples = _examples(doc)
    assert examples, "no tagged examples found"
    for type_name, body in examples:
        assert type_name in MESSAGE_TYPES, f"example tagged with unknown type {type_name!r}"
        cls = MESSAGE_TYPES[type_name]
        message = decode(body.encode("utf-8"), cls)
        assert isinstance(message, cls)
        # the example is exactly what encode() emits, modulo whitespace and key order
        assert json.loads(encode(message)) == json.loads(body), f"{type_name} example drifted"


def test_constants_match_the_doc(doc: str) -> None:
    assert f"`{ROOT}`" in doc
    assert f'"schema": {SCHEMA_VERSION}' in doc
    assert f"manifest schema `{MANIFEST_SCHEMA}`" in doc
    for n in (MAX_CONTROL_BYTES, MAX_TELEMETRY_BYTES, MAX_ARTIFACT_SIZE, DEFAULT_CHUNK_SIZE):
        assert str(n) in doc, f"{n} not in the doc"
    for name in (*UPDATE_STATES, *RECORD_KINDS):
        assert f"`{name}`" in doc, f"{name!r} not in the doc"
