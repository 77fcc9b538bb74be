"""Garbage sent to a real controller process over a real broker: every message is dropped and
counted (visible in ``GET /api/v1/health``), the controller stays up and connected, and valid
traffic afterwards is still stored, acknowledged and served."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from controller.cli.client import ControllerClient
from edgewise_wire import Ack, Presence, Reported, TelemetryBatch, decode, encode
from edgewise_wire.message_base import MAX_CONTROL_BYTES, MAX_TELEMETRY_BYTES, ModelRef
from edgewise_wire.request_messages import ArtifactRequest
from edgewise_wire.topics import chunk_topic, chunk_wildcard
from simulator.broker import BrokerProcess
from simulator.demo import start_controller, stop_process
from tests.harness.iris_models import IrisModels

pytestmark = [pytest.mark.broker]

GARBAGE_DEVICE = "ctl-garbage"


class MqttProbe:
    """A plain paho client (its own network thread) for publishing garbage and watching acks."""

    def __init__(self, broker: BrokerProcess) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"ew-test-probe-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published(), f"the broker did not take the message on {topic}"

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(10), f"no SUBACK for {topic}"

    def expect(self, topic: str, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"nothing arrived on {topic} within {timeout} s")
            try:
                got, payload = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            if got == topic:
                return payload

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class RunningController:
    proc: subprocess.Popen[bytes]
    client: ControllerClient
    workdir: Path
    sha: str  # a registered artifact (model b: several chunks)
    chunk_count: int
    chunk0: bytes

    def counters(self) -> Counter[str]:
        health = self.client.health()
        assert health["status"] == "ok" and health["mqtt_connected"], health
        counts: Counter[str] = Counter()
        for section in ("bridge", "chunks"):
            counts.update({f"{section}.{k}": v for k, v in health[section].items()})
        return counts

    def assert_alive(self) -> None:
        assert self.proc.poll() is None, f"the controller exited; see {self.workdir}/controller.log"
        self.counters()

    def log_text(self) -> str:
        return (self.workdir / "controller.log").read_text(errors="replace")


def _start(broker: BrokerProcess, workdir: Path, models: IrisModels) -> RunningController:
    proc, url = start_controller(workdir, broker)
    client = ControllerClient(url, timeout=5)
    b = models.b
    stored = client.push_version(b.manifest, b.data)
    assert stored["sha256"] == b.manifest.artifact.sha256
    ref = b.manifest.artifact
    return RunningController(proc, client, workdir, ref.sha256, ref.chunk_count,
                             b.data[:ref.chunk_size])


def _stop(ctl: RunningController) -> None:
    ctl.client.close()
    stop_process(ctl.proc)


@pytest.fixture(scope="module")
def controller(broker: BrokerProcess, tmp_path_factory: pytest.TempPathFactory,
               iris_models: IrisModels) -> Iterator[RunningController]:
    ctl = _start(broker, tmp_path_factory.mktemp("controller"), iris_models)
    yield ctl
    _stop(ctl)


@pytest.fixture(scope="module")
def probe(broker: BrokerProcess) -> Iterator[MqttProbe]:
    p = MqttProbe(broker)
    yield p
    p.close()


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _telemetry(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"schema": 1, "type": "telemetry", "first_seq": 1, "last_seq": 1,
                            "records": [{"seq": 1, "kind": "error", "ts": 1.0}],
                            "dropped_total": 0, "ts": 1.0}
    body.update(changes)
    return body


def _reported(**changes: Any) -> dict[str, Any]:
    body = json.loads(encode(Reported(state="idle", active=None)))
    body.update(changes)
    return body


def _presence(**changes: Any) -> dict[str, Any]:
    body = json.loads(encode(Presence(online=True)))
    body.update(changes)
    return body


def _art_req(sha: str, ranges: Any) -> bytes:
    return _json({"schema": 1, "type": "art_req", "sha256": sha, "ranges": ranges})


@dataclass(frozen=True)
class Case:
    topic: str  # with {dev} for the device id
    payload: Callable[[RunningController], bytes]
    counter: str = "bridge.dropped_malformed"


def _const(payload: bytes) -> Callable[[RunningController], bytes]:
    return lambda ctl: payload


T = "ew/v1/dev/{dev}/telemetry"
R = "ew/v1/dev/{dev}/reported"
P = "ew/v1/dev/{dev}/presence"
A = "ew/v1/dev/{dev}/art/req"
VALID_TELEMETRY = _json(_telemetry())

CASES: dict[str, Case] = {
    # telemetry
    "telemetry-not-json": Case(T, _const(b"\xff\xfe not json")),
    "telemetry-empty": Case(T, _const(b"")),
    "telemetry-json-array": Case(T, _const(_json([_telemetry()]))),
    "telemetry-schema-2": Case(T, _const(_json(_telemetry(schema=2)))),
    "telemetry-wrong-type": Case(T, _const(_json(_presence()))),
    "telemetry-seq-string": Case(T, _const(_json(_telemetry(first_seq="1")))),
    "telemetry-seq-zero": Case(T, _const(_json(_telemetry(first_seq=0)))),
    "telemetry-seq-range-inverted": Case(T, _const(_json(_telemetry(first_seq=10, last_seq=5)))),
    "telemetry-record-outside-range": Case(T, _const(_json(_telemetry(
        first_seq=1, last_seq=2, records=[{"seq": 7, "kind": "error", "ts": 1.0}])))),
    "telemetry-record-kind-unknown": Case(T, _const(_json(_telemetry(
        records=[{"seq": 1, "kind": "rm -rf", "ts": 1.0}])))),
    "telemetry-records-not-list": Case(T, _const(_json(_telemetry(records={"seq": 1})))),
    "telemetry-record-not-object": Case(T, _const(_json(_telemetry(records=[5])))),
    "telemetry-record-ts-nan": Case(T, _const(_json(_telemetry(
        records=[{"seq": 1, "kind": "error", "ts": float("nan")}])))),
    "telemetry-dropped-total-negative": Case(T, _const(_json(_telemetry(dropped_total=-1)))),
    "telemetry-oversized": Case(T, _const(_json(_telemetry(padding="x" * MAX_TELEMETRY_BYTES)))),
    "telemetry-deeply-nested": Case(T, _const(b"[" * 100_000 + b"]" * 100_000)),
    "telemetry-ts-too-large-for-float": Case(T, _const(_json(_telemetry(ts=10**400)))),
    # reported
    "reported-not-json": Case(R, _const(b"reported!")),
    "reported-state-unknown": Case(R, _const(_json(_reported(state="exploded")))),
    "reported-state-int": Case(R, _const(_json(_reported(state=3)))),
    "reported-progress-three-items": Case(R, _const(_json(_reported(progress=[1, 2, 3])))),
    "reported-progress-negative": Case(R, _const(_json(_reported(progress=[-1, 2])))),
    "reported-active-not-object": Case(R, _const(_json(_reported(active="iris:1")))),
    "reported-labels-not-strings": Case(R, _const(_json(_reported(labels={"site": 1})))),
    "reported-oversized": Case(R, _const(_json(_reported(last_error="e" * MAX_CONTROL_BYTES)))),
    # presence
    "presence-not-json": Case(P, _const(b"\x00")),
    "presence-online-string": Case(P, _const(_json(_presence(online="yes")))),
    "presence-missing-ts": Case(P, _const(_json({"schema": 1, "type": "presence",
                                                 "online": True}))),
    "presence-wrong-type": Case(P, _const(_json(_reported()))),
    # artifact requests
    "art-req-not-json": Case(A, _const(b"give me chunks")),
    "art-req-range-inverted": Case(A, lambda c: _art_req(c.sha, [[3, 1]])),
    "art-req-range-empty": Case(A, lambda c: _art_req(c.sha, [[2, 2]])),
    "art-req-range-negative": Case(A, lambda c: _art_req(c.sha, [[-1, 2]])),
    "art-req-range-float": Case(A, lambda c: _art_req(c.sha, [[0, 1.5]])),
    "art-req-range-bool": Case(A, lambda c: _art_req(c.sha, [[False, True]])),
    "art-req-range-three-items": Case(A, lambda c: _art_req(c.sha, [[0, 1, 2]])),
    "art-req-ranges-not-list": Case(A, lambda c: _art_req(c.sha, "0-3")),
    "art-req-sha-missing": Case(A, _const(_json({"schema": 1, "type": "art_req",
                                                 "ranges": [[0, 1]]}))),
    "art-req-oversized": Case(A, lambda c: _art_req(c.sha, [[0, 1]] * (MAX_CONTROL_BYTES // 6))),
    "art-req-unknown-sha": Case(A, _const(_art_req("0" * 64, [[0, 1]])),
                                "chunks.unknown_artifact"),
    "art-req-beyond-chunk-count": Case(A, lambda c: _art_req(c.sha, [[0, c.chunk_count + 1]]),
                                       "chunks.bad_range"),
    "art-req-far-beyond-chunk-count": Case(A, lambda c: _art_req(c.sha, [[c.chunk_count, 10**9]]),
                                           "chunks.bad_range"),
    # a valid message on a topic whose device id is not a valid one
    "device-id-leading-dash": Case("ew/v1/dev/-lead/telemetry", _const(VALID_TELEMETRY)),
    "device-id-leading-underscore": Case("ew/v1/dev/_lead/reported",
                                         _const(_json(_reported()))),
    "device-id-too-long": Case("ew/v1/dev/" + "d" * 65 + "/telemetry", _const(VALID_TELEMETRY)),
    "device-id-with-space": Case("ew/v1/dev/has space/presence", _const(_json(_presence()))),
    "device-id-non-ascii": Case("ew/v1/dev/g\u00e9r\u00e4t/telemetry", _const(VALID_TELEMETRY)),
    "device-id-empty": Case("ew/v1/dev//art/req", lambda c: _art_req(c.sha, [[0, 1]])),
}


def _wait_counted(ctl: RunningController, before: Counter[str], timeout: float) -> Counter[str]:
    deadline = time.monotonic() + timeout
    while True:
        diff = ctl.counters() - before
        if diff or time.monotonic() > deadline:
            return diff
        time.sleep(0.03)


@pytest.mark.parametrize("name", list(CASES))
def test_garbage_is_dropped_counted_and_the_controller_stays_up(
        name: str, controller: RunningController, probe: MqttProbe) -> None:
    case = CASES[name]
    before = controller.counters()
    probe.publish(case.topic.format(dev=GARBAGE_DEVICE), case.payload(controller))
    diff = _wait_counted(controller, before, timeout=3)
    assert diff == Counter({case.counter: 1}), (
        f"expected exactly one {case.counter}, the counters moved by {dict(diff)}; "
        f"see {controller.workdir}/controller.log")
    controller.assert_alive()


def test_valid_traffic_after_garbage_is_stored_acknowledged_and_served(
        controller: RunningController, probe: MqttProbe) -> None:
    device = f"ctl-valid-{uuid.uuid4().hex[:8]}"
    probe.subscribe(f"ew/v1/dev/{device}/ack")
    probe.subscribe(chunk_wildcard(controller.sha))
    before = controller.counters()
    for case in CASES.values():  # every kind of garbage in one burst
        probe.publish(case.topic.format(dev=GARBAGE_DEVICE), case.payload(controller))

    now = time.time()
    records = [{"seq": i, "kind": "error", "ts": now, "reason": "test"} for i in (1, 2, 3)]
    probe.publish(f"ew/v1/dev/{device}/telemetry", encode(TelemetryBatch(1, 3, records)))
    ack = decode(probe.expect(f"ew/v1/dev/{device}/ack", timeout=10), Ack)
    assert (ack.first_seq, ack.last_seq) == (1, 3)
    assert controller.client.telemetry_count(device) == 3

    probe.publish(f"ew/v1/dev/{device}/presence", encode(Presence(online=True)))
    active = ModelRef("iris", 1, controller.sha)
    probe.publish(f"ew/v1/dev/{device}/reported", encode(Reported(state="active", active=active)))
    deadline = time.monotonic() + 10
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        row = next((d for d in controller.client.list_devices() if d["device_id"] == device), {})
        if row.get("online") and row.get("state") == "active":
            break
        time.sleep(0.05)
    assert row.get("online") and row.get("state") == "active", row
    assert row["active_sha256"] == controller.sha

    probe.publish(f"ew/v1/dev/{device}/art/req",
                  encode(ArtifactRequest(controller.sha, ((0, 1),))))
    assert probe.expect(chunk_topic(controller.sha, 0), timeout=10) == controller.chunk0

    counted = controller.counters() - before
    dropped = sum(v for k, v in counted.items() if k != "bridge.batches"
                  and k not in ("bridge.records_stored", "chunks.requests",
                                "chunks.chunks_sent", "chunks.bytes_sent"))
    assert dropped >= len(CASES) - 1, dict(counted)  # (the decoder gaps are reported above)
    assert counted["bridge.store_failures"] == 0
    known = {d["device_id"] for d in controller.client.list_devices()}
    assert device in known
    assert not known & {GARBAGE_DEVICE, "-lead", "_lead", "has space", "g\u00e9r\u00e4t"}, known
    controller.assert_alive()
    log = controller.log_text()
    assert "dropped message (malformed)" in log
    assert "asked for unknown artifact" in log and "asked for chunks beyond" in log


def test_unstorable_messages_are_dropped_and_do_not_block_other_devices(
        fresh_broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    """Integers past SQL's 64-bit range: in protocol fields (seq, versions) they are malformed
    and dropped; in a free-form record field the record is kept with that column empty (the
    value stays in its JSON payload). Neither is retried forever nor blocks other devices.
    A broker of its own: this module's controller still runs the fleet on the shared one, and a
    second controller (another database) on its topic root refuses to start."""
    broker = fresh_broker
    ctl = _start(broker, tmp_path / "controller", iris_models)
    probe = MqttProbe(broker)
    try:
        good = f"ctl-good-{uuid.uuid4().hex[:8]}"
        probe.subscribe(f"ew/v1/dev/{good}/ack")
        before = ctl.counters()
        huge = 2**63
        poison_batch = _json(_telemetry(first_seq=huge, last_seq=huge,
                                        records=[{"seq": huge, "kind": "error", "ts": 1.0}]))
        probe.publish("ew/v1/dev/ctl-poison/telemetry", poison_batch)
        poison_record = _json(_telemetry(records=[
            {"seq": 1, "kind": "prediction", "ts": 1.0, "version": huge}]))
        probe.publish("ew/v1/dev/ctl-poison/telemetry", poison_record)
        probe.publish("ew/v1/dev/ctl-poison/reported", encode(Reported(
            state="active", active=ModelRef("iris", huge, ctl.sha))))

        records = [{"seq": 1, "kind": "error", "ts": time.time()}]
        probe.publish(f"ew/v1/dev/{good}/telemetry", encode(TelemetryBatch(1, 1, records)))
        ack = decode(probe.expect(f"ew/v1/dev/{good}/ack", timeout=10), Ack)
        assert (ack.first_seq, ack.last_seq) == (1, 1)
        # the ack follows the commit; the REST read is polled briefly all the same (seen 0 once
        # in a full run on a loaded machine, never alone): a lost record still fails here
        deadline = time.monotonic() + 5
        while ctl.client.telemetry_count(good) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ctl.client.telemetry_count(good) == 1
        assert ctl.client.telemetry_count("ctl-poison") == 1  # the record with the huge version

        counted = ctl.counters() - before
        drops = sum(v for k, v in counted.items() if k.startswith("bridge.dropped_"))
        assert drops == 2 and counted["bridge.store_failures"] == 0, dict(counted)
        ctl.assert_alive()
    finally:
        probe.close()
        _stop(ctl)
