"""Harness for the update end-to-end tests: the real ``edgewise-agent`` daemon in a child process,
and the test acting as its controller over a real Mosquitto.

The controller side signs what it sends (``edgewise_wire.envelope``), publishes retained desired
states, answers ``art/req`` with chunks (optionally tampered with or withheld) and counts every
chunk it serves, so a test can prove a resumed download asked only for what was missing. It uses
paho's own network thread rather than :class:`~edgewise_mqtt.link.MqttLink`: the tests are
plain synchronous code that kills and restarts processes, and one client needs no event loop.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from controller.security.signing import generate_keypair, sign_manifest, sign_rollback_order
from edge_agent.daemon import PAUSE_ENV
from edge_agent.update import REST_STATES as UPDATE_REST_STATES
from edgewise_mqtt.link import BrokerAddress
from edgewise_wire import (
    Ack,
    ArtifactRef,
    Desired,
    Manifest,
    ModelRef,
    ProbationPolicy,
    Reported,
    TelemetryBatch,
    decode,
    encode,
)
from edgewise_wire.request_messages import ArtifactRequest
from edgewise_wire.topics import (
    DeviceChannel,
    DeviceTopic,
    chunk_topic,
    device_topic,
    parse_topic,
)
from simulator.broker import free_port
from tests.harness.fake_controller import ChunkTamper
from tests.harness.paths import REPO_ROOT
from tests.harness.waiting import wait_for

# where the agent has nothing left in flight, as reported
REST_STATES = frozenset(s.value for s in UPDATE_REST_STATES)


@dataclass(frozen=True)
class Artifact:
    manifest: Manifest
    data: bytes

    @property
    def ref(self) -> ModelRef:
        m = self.manifest
        return ModelRef(m.model, m.version, m.artifact.sha256)

    @property
    def sha256(self) -> str:
        return self.manifest.artifact.sha256

    def with_version(self, version: int) -> Artifact:
        return Artifact(dataclasses.replace(self.manifest, version=version), self.data)


def unique_device_id(prefix: str = "upd") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"






# ------------------------------------------------------------------------------------ signing


@dataclass(frozen=True)
class Signer:
    """The controller's signing key; ``public_pem`` goes into the agent's ``trusted_keys``."""

    private_pem: bytes
    public_pem: bytes
    key_id: str

    @classmethod
    def generate(cls) -> Signer:
        return cls(*generate_keypair())

    def envelope(self, manifest: Manifest, *, expires_in: float = 3600.0,
                 device_class: str | None = None) -> dict[str, Any]:
        return sign_manifest(manifest.to_dict(), self.private_pem,
                             expires_at=time.time() + expires_in, device_class=device_class)

    def rollback_order(self, device_id: str, model: str, to_version: int) -> dict[str, Any]:
        now = time.time()
        return sign_rollback_order(self.private_pem, model=model, to_version=to_version,
                                   issued_at=now, expires_at=now + 3600, device_id=device_id)

    def desired(self, artifact: Artifact | None, deployment_id: str, *,
                probation: ProbationPolicy | None = None,
                rollback_to: tuple[str, str, int] | None = None) -> Desired:
        """A signed desired state; ``rollback_to`` = (device id, model, version) adds an order."""
        order = self.rollback_order(*rollback_to) if rollback_to else None
        if artifact is None:
            return Desired(deployment_id, None, rollback_order=order, probation=probation)
        return Desired(deployment_id, artifact.manifest, envelope=self.envelope(artifact.manifest),
                       rollback_order=order, probation=probation)


def tamper_signature(envelope: dict[str, Any]) -> dict[str, Any]:
    """The same envelope with one bit of its signature flipped (still valid base64)."""
    sig = bytearray(base64.b64decode(envelope["signature"]["sig"]))
    sig[5] ^= 0x01
    return {**envelope, "signature": {**envelope["signature"],
                                      "sig": base64.b64encode(bytes(sig)).decode("ascii")}}


# --------------------------------------------------------------------------------- controller


class Controller:
    """The test's side of one device's MQTT conversation.

    Publishes desired states (retained, like the real controller), answers artifact requests
    from the artifacts given to :meth:`serve`, acknowledges telemetry and records every reported
    state with the time it arrived. Runs in paho's network thread; reconnects by itself and
    re-publishes the last desired state when it does (a broker killed without saving would
    otherwise forget the retained one).
    """

    def __init__(self, broker: BrokerAddress, device_id: str) -> None:
        self.device_id = device_id
        self.broker = broker
        self.tamper: ChunkTamper | None = None
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._reported: list[tuple[float, Reported]] = []
        self._requests: list[tuple[float, ArtifactRequest]] = []
        self._served: Counter[tuple[str, int]] = Counter()
        self._artifacts: dict[str, tuple[ArtifactRef, bytes]] = {}
        self._last_desired: bytes | None = None
        self._connected = threading.Event()
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                             client_id=f"ew-test-upd-{device_id}", protocol=mqtt.MQTTv311,
                             clean_session=True)
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.max_inflight_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    def topic(self, channel: DeviceChannel) -> str:
        return device_topic(self.device_id, channel)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.client.connect(self.broker.host, self.broker.port, keepalive=10)
        self.client.loop_start()
        self.wait_connected()

    def wait_connected(self, timeout: float = 10.0) -> None:
        if not self._connected.wait(timeout):
            raise AssertionError(f"test controller not connected to {self.broker}")

    def close(self) -> None:
        """Remove what this device left retained on the (shared) broker, then disconnect."""
        if self._connected.is_set():
            for channel in (DeviceChannel.DESIRED, DeviceChannel.REPORTED,
                            DeviceChannel.PRESENCE):
                with contextlib.suppress(Exception):
                    self.client.publish(self.topic(channel), b"", qos=1,
                                        retain=True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            return
        for channel in (DeviceChannel.ARTIFACT_REQUEST, DeviceChannel.REPORTED,
                        DeviceChannel.TELEMETRY):
            client.subscribe(self.topic(channel), qos=1)
        with self._lock:
            desired = self._last_desired
        if desired is not None:
            client.publish(self.topic(DeviceChannel.DESIRED), desired, qos=1, retain=True)
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self._connected.clear()

    # -- what the controller sends ---------------------------------------------------------

    def serve(self, *artifacts: Artifact | tuple[ArtifactRef, bytes]) -> None:
        """Answer requests for each artifact's sha256 with slices of its bytes (even when they
        do not match the ref: that is how a lying manifest is tested)."""
        with self._lock:
            for item in artifacts:
                ref, data = ((item.manifest.artifact, item.data) if isinstance(item, Artifact)
                             else item)
                self._artifacts[ref.sha256] = (ref, data)

    def publish_desired(self, desired: Desired) -> None:
        self.publish_raw_desired(encode(desired))

    def publish_raw_desired(self, payload: bytes) -> None:
        with self._lock:
            self._last_desired = payload
        info = self.client.publish(self.topic(DeviceChannel.DESIRED), payload, qos=1, retain=True)
        info.wait_for_publish(10)

    # -- what the agent sent ----------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._handle(msg.topic, bytes(msg.payload))
        except Exception as exc:  # recorded: an exception here would vanish in paho's thread
            self.errors.append(f"{msg.topic}: {type(exc).__name__}: {exc}")

    def _handle(self, topic: str, payload: bytes) -> None:
        parsed = parse_topic(topic)
        assert isinstance(parsed, DeviceTopic)
        now = time.monotonic()
        if parsed.channel is DeviceChannel.REPORTED:
            if payload:  # empty: our own clean-up of the retained message
                reported = decode(payload, Reported)
                with self._lock:
                    self._reported.append((now, reported))
        elif parsed.channel is DeviceChannel.TELEMETRY:
            batch = decode(payload, TelemetryBatch)
            self.client.publish(self.topic(DeviceChannel.ACK),
                                encode(Ack(batch.first_seq, batch.last_seq, epoch=batch.epoch if batch.epoch is not None else 0)))
        elif parsed.channel is DeviceChannel.ARTIFACT_REQUEST:
            request = decode(payload, ArtifactRequest)
            with self._lock:
                self._requests.append((now, request))
                entry = self._artifacts.get(request.sha256)
            if entry is not None:
                self._answer(request, *entry)

    def _answer(self, request: ArtifactRequest, ref: ArtifactRef, data: bytes) -> None:
        for start, end in request.ranges:
            for index in range(start, end):
                offset = index * ref.chunk_size
                good = data[offset:offset + ref.chunk_length(index)]
                with self._lock:
                    before = self._served[(ref.sha256, index)]
                chunk = self.tamper(index, good, before) if self.tamper else good
                if chunk is None:
                    continue  # withheld: not counted as served
                with self._lock:
                    self._served[(ref.sha256, index)] += 1
                self.client.publish(chunk_topic(ref.sha256, index), chunk, qos=1)

    # -- inspection --------------------------------------------------------------------------

    def reports(self, since: float = 0.0) -> list[Reported]:
        with self._lock:
            return [r for t, r in self._reported if t >= since]

    @property
    def last_reported(self) -> Reported | None:
        with self._lock:
            return self._reported[-1][1] if self._reported else None

    def requests(self, sha256: str, since: float = 0.0) -> list[ArtifactRequest]:
        with self._lock:
            return [r for t, r in self._requests if t >= since and r.sha256 == sha256]

    def served(self, sha256: str) -> Counter[int]:
        with self._lock:
            return Counter({i: n for (s, i), n in self._served.items() if s == sha256})

    def wait_reported(self, predicate: Callable[[Reported], bool], timeout: float, what: str,
                      since: float = 0.0) -> Reported:
        """The first reported state (arrived at or after ``since``) matching ``predicate``."""
        def match() -> Reported | None:
            return next((r for r in self.reports(since) if predicate(r)), None)

        return wait_for(match, timeout, lambda: f"{what}; reported so far: "
                                                 f"{describe_reports(self.reports(since))}")

    def wait_rest(self, timeout: float, since: float = 0.0,
                  states: frozenset[str] = REST_STATES) -> Reported:
        """The latest reported state, once the latest one is a rest state."""
        def at_rest() -> Reported | None:
            last = self.last_reported
            reports = self.reports(since)
            return last if reports and last is not None and last.state in states else None

        return wait_for(at_rest, timeout, lambda: f"a reported rest state {sorted(states)}; "
                                                   f"reported: {describe_reports(self.reports(since))}")


def retained_reported(broker: BrokerAddress, device_id: str, timeout: float = 5.0) -> Reported:
    """What a controller connecting now would read: the retained ``reported`` message."""
    got: list[bytes] = []
    arrived = threading.Event()

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.payload:
            got.append(bytes(msg.payload))
            arrived.set()

    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=f"ew-test-upd-peek-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv311, clean_session=True)
    client.on_message = on_message
    client.on_connect = lambda c, u, f, r, p: c.subscribe(
        device_topic(device_id, DeviceChannel.REPORTED), qos=1)
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    try:
        assert arrived.wait(timeout), f"no retained reported state for {device_id}"
    finally:
        client.disconnect()
        client.loop_stop()
    return decode(got[0], Reported)


def describe_reports(reports: list[Reported], last: int = 8) -> str:
    return "; ".join(
        f"{r.state} active={r.active} target={r.target} error={r.last_error!r}"
        for r in reports[-last:]) or "nothing"


def same_ref(ref: ModelRef | None, artifact: Artifact) -> bool:
    return ref is not None and (ref.model, ref.version, ref.sha256) == (
        artifact.manifest.model, artifact.manifest.version, artifact.sha256)


# ------------------------------------------------------------------------------------- daemon


class AgentProcess:
    """One device: a TOML config in its own directory and the ``edgewise-agent`` daemon on it,
    started, SIGKILLed and started again as a real device would be."""

    def __init__(self, workdir: Path, device_id: str, broker: BrokerAddress, signer: Signer | None,
                 **config: Any) -> None:
        self.workdir = workdir
        self.device_id = device_id
        self.broker = broker
        self.data_dir = workdir / "data"
        self.http_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._http: httpx.Client | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        values: dict[str, Any] = {
            "device_id": device_id, "data_dir": str(self.data_dir), "device_class": "pi4",
            "http_port": self.http_port, "chunk_repair_interval_s": 0.5,
            "telemetry_flush_interval_s": 0.1, "keepalive_s": 5,
            "trusted_keys": [signer.public_pem.decode()] if signer else [],
        }
        values.update(config)
        self.config_path = workdir / "agent.toml"
        self.config_path.write_text(_toml(values, broker))

    @property
    def log_path(self) -> Path:
        return self.workdir / "agent.log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, pause_in: str | None = None, wait_http: bool = True) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {k: v for k, v in os.environ.items() if k != PAUSE_ENV}
        if pause_in is not None:
            env[PAUSE_ENV] = pause_in
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.starts} (pause_in={pause_in}) =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge_agent.daemon", "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=REPO_ROOT,
                start_new_session=True)
        if wait_http:
            self.wait_http()

    def wait_http(self, timeout: float = 20.0) -> dict[str, Any]:
        def up() -> dict[str, Any] | None:
            assert self.proc is not None and self.proc.poll() is None, (
                f"the agent exited with {self.proc and self.proc.returncode}:\n"
                f"{self.log_text()[-3000:]}")
            try:
                return self.health()
            except httpx.HTTPError:
                return None

        return wait_for(up, timeout, "the agent's local HTTP API")

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye, exactly like pulling the plug on the process."""
        self._close_http()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM and wait for the clean exit."""
        self._close_http()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError("the agent did not stop on SIGTERM within 15 s") from None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- the pause hook ---------------------------------------------------------------------

    @property
    def paused_file(self) -> Path:
        return self.data_dir / "paused-in"

    def paused_in(self) -> str | None:
        """The state the hook parked the update in (``downloading:N`` counts as downloading)."""
        try:
            return self.paused_file.read_text().strip().partition(":")[0] or None
        except FileNotFoundError:
            return None

    def wait_paused(self, state: str, timeout: float = 15.0) -> None:
        def paused() -> bool:
            assert self.alive, f"the agent exited:\n{self.log_text()[-3000:]}"
            return self.paused_in() == state

        wait_for(paused, timeout, lambda: f"{self.paused_file} saying {state!r} "
                                          f"(it says {self.paused_in()!r}); agent log tail:\n"
                                          f"{self.log_text()[-2500:]}")

    # -- local HTTP API ------------------------------------------------------------------------

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=f"http://127.0.0.1:{self.http_port}", timeout=10)
        return self._http

    def _close_http(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def health(self) -> dict[str, Any]:
        response = self.http.get("/v1/health")
        response.raise_for_status()
        return response.json()

    def predict(self, features: Any) -> httpx.Response:
        return self.http.post("/v1/predict", json={"features": features})

    def predict_ok(self, features: Any) -> list[dict[str, Any]]:
        response = self.predict(features)
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()["predictions"]


def _toml(values: dict[str, Any], broker: BrokerAddress) -> str:
    # json.dumps of a str or list of str is valid TOML (basic strings share JSON's escapes)
    lines = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    lines += ["[broker]", f'host = "{broker.host}"', f"port = {broker.port}"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- on disk


@dataclass(frozen=True)
class SlotView:
    """What ``active.json`` points at, checked against the bytes on disk."""

    active: ModelRef
    previous: ModelRef | None
    record: dict[str, Any]


def _checked_slot(data_dir: Path, slot: Any, what: str) -> ModelRef:
    assert isinstance(slot, dict), f"{what} is not an object: {slot!r}"
    manifest = Manifest.from_dict(slot["manifest"])
    name = slot["file"]
    assert isinstance(name, str) and "/" not in name, f"{what} names file {name!r}"
    assert not name.endswith((".tmp", ".part")), f"{what} points at a temporary file {name!r}"
    path = data_dir / "models" / name
    assert path.is_file(), f"{what} points at {path}, which does not exist"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == manifest.artifact.sha256, (
        f"{what} points at {name} whose sha256 is {digest[:12]}, manifest says "
        f"{manifest.artifact.sha256[:12]}: a torn or wrong file")
    assert path.stat().st_size == manifest.artifact.size
    return ModelRef(manifest.model, manifest.version, manifest.artifact.sha256)


def check_slots(data_dir: Path) -> SlotView:
    """The pointer names complete, matching files (active and, if kept, previous)."""
    record = json.loads((data_dir / "active.json").read_text())
    active = _checked_slot(data_dir, record, "active.json")
    previous = record.get("previous")
    prev_ref = _checked_slot(data_dir, previous, "active.json previous") if previous else None
    return SlotView(active, prev_ref, record)


def copy_data_dir(template: Path, agent: AgentProcess) -> None:
    """Start ``agent`` from a data dir another daemon left (a device with a model installed)."""
    shutil.copytree(template, agent.data_dir)


@contextlib.contextmanager
def device(tmp_path: Path, broker: BrokerAddress, signer: Signer | None, *,
           name: str = "agent", **config: Any) -> Iterator[tuple[AgentProcess, Controller]]:
    """A daemon (not started) and its test controller (connected); both cleaned up after."""
    device_id = unique_device_id()
    controller = Controller(broker, device_id)
    controller.start()
    agent = AgentProcess(tmp_path / name, device_id, broker, signer, **config)
    try:
        yield agent, controller
    finally:
        agent.kill()
        controller.close()


def serving_version(agent: AgentProcess, rows: Any) -> int:
    """Predict through HTTP; every row must be answered by one model version, returned."""
    predictions = agent.predict_ok(rows)
    versions = {p["version"] for p in predictions}
    assert len(versions) == 1, f"one call answered by several versions: {versions}"
    return int(versions.pop())
