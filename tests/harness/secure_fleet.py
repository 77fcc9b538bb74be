"""Helpers for the security tests: a Mosquitto started with the configuration `edgewise broker
config` generates, and plain paho clients that connect with a given credential."""

from __future__ import annotations

import getpass
import os
import queue
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from controller.security.broker_config import (
    BrokerSettings,
    controller_cert_paths,
    sync_broker_dir,
    write_broker_dir,
)
from controller.security.enrollment import Bundle, enroll_device
from controller.security.pki import FleetCA, controller_identity
from simulator.broker import BrokerProcess, find_mosquitto, free_port
from tests.harness.fixtures import require_mosquitto


def require_tool(name: str, path: str | None, install: str) -> str:
    """The tool's path; skip (fail under CI) when it is missing."""
    if path is None:
        message = f"{name} is not installed ({install}); CI installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class SecureFleet:
    """A fleet CA in ``data_dir``, and a Mosquitto running the generated configuration."""

    data_dir: Path
    broker_dir: Path
    settings: BrokerSettings
    broker: BrokerProcess
    bundles: Path
    enrolled: dict[str, Bundle] = field(default_factory=dict)

    @property
    def ca(self) -> FleetCA:
        return FleetCA.for_data_dir(self.data_dir)

    @property
    def cert_port(self) -> int:
        return self.settings.cert_port

    @property
    def password_port(self) -> int:
        assert self.settings.password_port is not None
        return self.settings.password_port

    @property
    def ca_file(self) -> str:
        return str(self.broker_dir / "ca.crt")

    def controller_credential(self) -> tuple[str, str]:
        cert, key = controller_cert_paths(self.broker_dir, controller_identity())
        return str(cert), str(key)

    def enroll(self, device_id: str, mode: str = "cert", **kwargs: object) -> Bundle:
        bundle = enroll_device(self.data_dir, device_id, self.bundles, mode=mode,
                               **kwargs)  # type: ignore[arg-type]
        self.enrolled[device_id] = bundle
        if mode == "password":
            self.reload()
        return bundle

    def revoke(self, device_id: str) -> None:
        self.ca.revoke(device_id)
        sync_broker_dir(self.ca, self.settings)
        self.reload()

    def reload(self) -> None:
        """SIGHUP, then wait until Mosquitto logged that it reloaded."""
        assert self.broker.proc is not None
        log = self.log_path
        before = log.read_text(errors="replace").count("Reloading config")
        self.broker.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while log.read_text(errors="replace").count("Reloading config") <= before:
            assert time.monotonic() < deadline, f"mosquitto did not reload; see {log}"
            time.sleep(0.02)
        time.sleep(0.2)  # the log line comes before the files are re-read

    @property
    def log_path(self) -> Path:
        """Mosquitto's own log (a file: its stdout is block-buffered)."""
        return self.broker.workdir / "broker-events.log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        self.broker.stop()


def start_secure_fleet(workdir: Path, *, password_port: bool = True) -> SecureFleet:
    binary = find_mosquitto()
    assert binary is not None
    data_dir, broker_dir = workdir / "controller-data", workdir / "broker"
    ca = FleetCA.for_data_dir(data_dir)
    ca.init()
    settings = BrokerSettings(out_dir=str(broker_dir), hostnames=["127.0.0.1", "localhost"],
                              cert_port=free_port(), bind="127.0.0.1",
                              password_port=free_port() if password_port else None)
    write_broker_dir(ca, settings)
    conf = workdir / "mosquitto.conf"
    # the generated file is meant to be included from Debian's mosquitto.conf; a test broker
    # adds what that main file would hold
    conf.write_text((broker_dir / "edgewise.conf").read_text()
                    + f"user {getpass.getuser()}\npersistence false\n"
                      f"log_dest file {workdir / 'broker-events.log'}\n"
                      "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
    process = BrokerProcess("mosquitto", settings.cert_port, workdir, [binary, "-c", str(conf)])
    process.start()
    bundles = workdir / "bundles"
    bundles.mkdir()
    return SecureFleet(data_dir, broker_dir, settings, process, bundles)


class Client:
    """A paho client with its own network thread, recording what it receives."""

    def __init__(self, fleet: SecureFleet, *, client_id: str | None = None,
                 cert: tuple[str, str] | None = None, ca_file: str | None = None,
                 username: str | None = None, password: str | None = None,
                 port: int | None = None) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.received: list[tuple[str, bytes]] = []
        self.connack: mqtt.ReasonCode | None = None
        self.error: str | None = None
        self.subacks: list[list[mqtt.ReasonCode]] = []
        self._connected = threading.Event()
        self._closed = threading.Event()
        self._suback = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"ew-test-{uuid.uuid4().hex[:8]}")
        self.client.tls_set(ca_certs=ca_file or fleet.ca_file,
                            certfile=cert[0] if cert else None,
                            keyfile=cert[1] if cert else None)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, f, r, p: self._closed.set()
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.port = port or fleet.cert_port

    def _on_connect(self, c: mqtt.Client, u: object, f: object, reason: mqtt.ReasonCode,
                    p: object) -> None:
        self.connack = reason
        if not reason.is_failure:
            self._connected.set()
        else:
            self._closed.set()

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        item = (msg.topic, bytes(msg.payload))
        self.received.append(item)
        self.messages.put(item)

    def _on_subscribe(self, c: mqtt.Client, u: object, mid: int, reasons: list[mqtt.ReasonCode],
                      p: object) -> None:
        self.subacks.append(reasons)
        self._suback.set()

    def connect(self, timeout: float = 5.0) -> bool:
        """True once the broker accepted the connection; False if it refused or dropped it."""
        try:
            self.client.connect("127.0.0.1", self.port, keepalive=30)
        except OSError as exc:  # ssl.SSLError included: the handshake failed outright
            self.error = f"{type(exc).__name__}: {exc}"
            return False
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._connected.is_set():
                return True
            if self._closed.is_set():
                break
            time.sleep(0.01)
        self.error = f"connack {self.connack}" if self.connack else "connection closed"
        self.close()
        return False

    @property
    def connected(self) -> bool:
        return self.client.is_connected()

    def subscribe(self, topic: str, timeout: float = 5.0) -> list[mqtt.ReasonCode]:
        self._suback.clear()
        self.client.subscribe(topic, qos=1)
        assert self._suback.wait(timeout), f"no SUBACK for {topic}"
        return self.subacks[-1]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=5)
        assert info.is_published(), f"the broker did not acknowledge the publish to {topic}"

    def expect(self, topic: str, payload: bytes | None = None, timeout: float = 5.0) -> bytes:
        """Wait for a message on ``topic`` (with ``payload`` if given)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"nothing arrived on {topic} within {timeout} s; got "
                                     f"{self.received}")
            try:
                got, data = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            if got == topic and (payload is None or data == payload):
                return data

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def copy_bundle(bundle: Bundle, dest: Path) -> Path:
    shutil.copytree(bundle.directory, dest)
    return dest / "agent.toml"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureFleet]:
    """A fleet CA and a Mosquitto running the generated TLS + ACL configuration."""
    require_mosquitto()
    secure = start_secure_fleet(tmp_path_factory.mktemp("secure-fleet"))
    yield secure
    secure.stop()
