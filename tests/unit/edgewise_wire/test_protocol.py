"""Pure protocol tests: topics, messages, manifests, bounds. No broker."""

from __future__ import annotations

import json

import pytest

from edgewise_wire import (
    Ack,
    ArtifactRef,
    ArtifactRequest,
    Desired,
    Manifest,
    ModelRef,
    PayloadTooLarge,
    Presence,
    Reported,
    SchemaError,
    SmokeTest,
    TelemetryBatch,
    TensorSpec,
    TopicError,
    decode,
    encode,
)
from edgewise_wire.message_base import MAX_CONTROL_BYTES
from edgewise_wire.topics import (
    ChunkTopic,
    DeviceChannel,
    DeviceTopic,
    chunk_topic,
    chunk_wildcard,
    device_topic,
    device_wildcard,
    parse_topic,
    shared,
)

SHA = "a" * 64


def make_manifest(**overrides: object) -> Manifest:
    values: dict[str, object] = dict(
        model="iris", version=3, format="onnx", task="classification",
        inputs=(TensorSpec("input", "float32", (None, 4)),),
        outputs=(TensorSpec("label", "int64", (None,)),
                 TensorSpec("probabilities", "float32", (None, 3))),
        label_output="label", score_output="probabilities", class_labels=(0, 1, 2),
        feature_names=("a", "b", "c", "d"), artifact=ArtifactRef.describe(b"x" * 150_000),
        smoke_tests=(SmokeTest([[1.0, 2.0, 3.0, 4.0]], [1], [[0.1, 0.8, 0.1]]),),
        smoke_tolerance=1e-4)
    values.update(overrides)
    return Manifest(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("channel", list(DeviceChannel))
def test_device_topics_round_trip(channel: DeviceChannel) -> None:
    topic = device_topic("pi-01", channel)
    assert topic.startswith("ew/v1/dev/pi-01/")
    assert parse_topic(topic) == DeviceTopic("pi-01", channel)
    assert device_wildcard(channel) == topic.replace("pi-01", "+")


def test_chunk_topics_round_trip() -> None:
    assert parse_topic(chunk_topic(SHA, 7)) == ChunkTopic(SHA, 7)
    assert chunk_wildcard(SHA) == f"ew/v1/art/{SHA}/+"
    assert shared("ctl", device_wildcard(DeviceChannel.TELEMETRY)) == "$share/ctl/ew/v1/dev/+/telemetry"


@pytest.mark.parametrize("topic", [
    "other/v1/dev/x/desired", "ew/v1/dev/x/unknown", "ew/v1/dev/../desired",
    "ew/v1/dev/a b/desired", f"ew/v1/art/{SHA}/x", "ew/v1/art/nothex/1", "ew/v1", "ew/v1/dev",
    "ew/v1/dev/" + "x" * 65 + "/desired",
])
def test_bad_topics_are_refused(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_topic(topic)


@pytest.mark.parametrize("device_id", ["", "a/b", "+", "#", "-x", "a" * 65, "dev\x00"])
def test_unsafe_device_ids_cannot_build_topics(device_id: str) -> None:
    with pytest.raises(TopicError):
        device_topic(device_id, DeviceChannel.DESIRED)


@pytest.mark.parametrize("message", [
    Presence(online=True, agent_version="0.1.0"),
    Desired("dep-1", make_manifest()),
    Desired("dep-2", None),
    Reported(state="downloading", active=ModelRef("iris", 2, SHA), target=ModelRef("iris", 3, SHA),
             deployment_id="dep-1", progress=(2, 3), labels={"site": "berlin"}),
    TelemetryBatch(5, 6, [{"seq": 5, "kind": "prediction", "ts": 1.0},
                          {"seq": 6, "kind": "feedback", "ts": 2.0}], dropped_total=4),
    Ack(5, 6, 1),
    ArtifactRequest(SHA, ((0, 2), (5, 9))),
])
def test_messages_round_trip(message: object) -> None:
    data = encode(message)  # type: ignore[arg-type]
    assert json.loads(data)["schema"] == 1
    assert decode(data, type(message)) == message  # type: ignore[arg-type]


def test_manifest_round_trips_through_json() -> None:
    manifest = make_manifest()
    assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest
    assert manifest.artifact.chunk_count == 3
    assert manifest.artifact.chunk_length(2) == 150_000 - 2 * 65536


@pytest.mark.parametrize("payload, fragment", [
    (b"", "empty payload"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"type": "ack", "first_seq": 1, "last_seq": 2}', "missing field 'schema'"),
    (b'{"schema": 2, "type": "ack", "first_seq": 1, "last_seq": 2}', "schema version 2"),
    (b'{"schema": 1, "type": "presence", "online": true, "ts": 1}', "'presence' where 'ack'"),
    (b'{"schema": 1, "type": "ack", "first_seq": 5, "last_seq": 2}', "must be >= 5"),
    (b'{"schema": 1, "type": "ack", "first_seq": "1", "last_seq": 2}', "must be an integer"),
    (b'{"schema": 1, "type": "ack", "first_seq": true, "last_seq": 2}', "must be an integer"),
    # an ack must name its outbox: without an epoch it could delete records of any
    (b'{"schema": 1, "type": "ack", "first_seq": 1, "last_seq": 2}', "missing field 'epoch'"),
    (b'{"schema": 1, "type": "ack", "first_seq": 1, "last_seq": 2, "epoch": null}',
     "missing field 'epoch'"),
    (b'{"schema": 1, "type": "ack", "first_seq": 1, "last_seq": 2, "epoch": -1}', "must be >= 0"),
    (b'{"schema": 1, "type": "ack", "first_seq": 1, "last_seq": 2, "epoch": 9007199254740992}',
     "exceeds"),
    (b'{"schema": 1, "type": "ack", "last_seq": 2, "epoch": 1}', "missing field 'first_seq'"),
])
def test_decode_errors_are_precise(payload: bytes, fragment: str) -> None:
    with pytest.raises(SchemaError, match=fragment):
        decode(payload, Ack)


def test_size_bound_is_checked_before_parsing() -> None:
    # not even valid JSON: the size check must refuse it before the parser sees it
    with pytest.raises(PayloadTooLarge):
        decode(b"{" * (MAX_CONTROL_BYTES + 1), Ack)


@pytest.mark.parametrize("records, fragment", [
    ([{"seq": 9, "kind": "prediction", "ts": 1.0}], "outside"),
    ([{"seq": 1, "kind": "weird", "ts": 1.0}], "kind"),
    ([{"seq": 1, "kind": "prediction"}], "ts"),
    (["not an object"], "must be an object"),
    ([{"seq": 1, "kind": "prediction", "ts": float("nan")}], "JSON|finite"),
])
def test_telemetry_records_are_validated(records: list[object], fragment: str) -> None:
    body = {"schema": 1, "type": "telemetry", "first_seq": 1, "last_seq": 2, "records": records,
            "dropped_total": 0, "ts": 1.0}
    with pytest.raises(SchemaError, match=fragment):
        decode(json.dumps(body).encode(), TelemetryBatch)


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d.update(format="pmml"), "format"),
    (lambda d: d.update(task="clustering"), "task"),
    (lambda d: d.update(label_output="nope"), "not among"),
    (lambda d: d["artifact"].update(chunk_sha256=["0" * 64]), "expected 3"),
    (lambda d: d["artifact"].update(size=10**10), "exceeds"),
    (lambda d: d.update(schema=99), "schema 99"),
    (lambda d: d["inputs"][0].update(shape=[-1, 4]), "non-negative"),
    (lambda d: d["smoke_tests"][0].update(expected_labels=[1, 2]), "differ in length"),
])
def test_bad_manifests_are_refused(mutate, fragment: str) -> None:  # type: ignore[no-untyped-def]
    d = json.loads(json.dumps(make_manifest().to_dict()))
    mutate(d)
    with pytest.raises(SchemaError, match=fragment):
        Manifest.from_dict(d)


def test_artifact_request_ranges_are_validated() -> None:
    body = {"schema": 1, "type": "art_req", "sha256": SHA, "ranges": [[3, 3]]}
    with pytest.raises(SchemaError, match="start < end"):
        decode(json.dumps(body).encode(), ArtifactRequest)


@pytest.mark.parametrize("payload", [
    b'{"schema": 1, "type": "art_req", "sha256": "../../etc", "ranges": [[0, 1]]}',
    b'{"schema": 1, "type": "art_req", "sha256": "' + b"A" * 64 + b'", "ranges": [[0, 1]]}',
    b'{"schema": 1, "type": "ack", "first_seq": NaN, "last_seq": 2}',
    b"[" * 100_000 + b"]" * 100_000,
])
def test_hostile_payloads_are_schema_errors(payload: bytes) -> None:
    with pytest.raises(SchemaError):
        decode(payload, ArtifactRequest if b"art_req" in payload else Ack)


@pytest.mark.parametrize("mutate", [
    lambda d: d["inputs"].append("not an object"),
    lambda d: d["smoke_tests"].append(7),
    lambda d: d["artifact"].update(sha256="../" + "a" * 61),
    lambda d: d["artifact"]["chunk_sha256"].__setitem__(0, "Z" * 64),
])
def test_manifest_type_confusion_is_a_schema_error(mutate) -> None:  # type: ignore[no-untyped-def]
    d = json.loads(json.dumps(make_manifest().to_dict()))
    mutate(d)
    with pytest.raises(SchemaError):
        Manifest.from_dict(d)


def test_unicode_digits_are_not_chunk_indexes() -> None:
    with pytest.raises(TopicError):
        parse_topic(f"ew/v1/art/{SHA}/\u00b2")


def test_a_spliced_telemetry_batch_decodes_like_an_encoded_one() -> None:
    """The agent sends stored record bodies with their seqs spliced in (no decode/encode per
    record); the controller must read exactly what encode() would have given it."""
    import json

    from edgewise_wire.codec import encode_telemetry_spliced
    from edgewise_wire.telemetry_messages import TelemetryBatch

    records = [{"kind": "prediction", "ts": 1.5, "model": "iris", "version": 2,
                "prediction_id": "b-1", "latency_ms": 0.25, "label": "ü", "confidence": 0.9},
               {"kind": "error", "ts": 2.0, "reason": "invalid_input"},
               {"kind": "feedback", "ts": 3.0, "prediction_id": "b-1", "truth": "ü"}]
    bodies = [(seq, json.dumps(r, separators=(",", ":"))) for seq, r in enumerate(records, 7)]
    payload = encode_telemetry_spliced(7, 9, bodies, dropped_total=3, epoch=42)
    assert payload is not None
    got = decode(payload, TelemetryBatch)
    assert got.records == [{**r, "seq": seq} for seq, r in enumerate(records, 7)]
    assert (got.first_seq, got.last_seq, got.dropped_total, got.epoch) == (7, 9, 3, 42)
    # what cannot be spliced safely is left to the record-by-record path
    for bad in ('{"x":NaN}', '{"x":-Infinity}', '{"seq":1}', "[1]"):
        assert encode_telemetry_spliced(1, 1, [(1, bad)], 0, 0) is None
    big = [(i, json.dumps({"pad": "x" * 5000})) for i in range(1, 1000)]
    assert encode_telemetry_spliced(1, 999, big, 0, 0) is None  # over MAX_TELEMETRY_BYTES
