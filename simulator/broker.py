"""Start a real MQTT broker for the demo, the tests and the benchmarks.

Mosquitto when it is installed (the broker Edgewise is tested with); otherwise an embedded amqtt
broker in a child process, so the demo still runs on a machine with nothing but Python. amqtt
speaks MQTT 3.1.1 only, which is why the core protocol never depends on MQTT 5.
"""

from __future__ import annotations

import getpass
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgewise_mqtt.link import BrokerAddress


class BrokerError(RuntimeError):
    """The broker could not be started; the message says why and what to install."""


# Ports are picked below the kernel's ephemeral range: a port the kernel hands out for bind(0)
# comes from that range, and so does the local port of every outgoing connection, which can take
# the port between now and the broker's bind, or while a test has the broker stopped for a
# restart on the same port (a NATS node once failed to start in CI that way).
_PORT_FLOOR = 10000
_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_port_random = random.Random()  # private: a test seeding `random` must not make workers collide
_ports_handed_out: set[int] = set()


def _ephemeral_range_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now, outside the ephemeral range when there is room
    below it, and not handed out before by this process (the caller binds it later)."""
    ceiling = _ephemeral_range_start()
    if ceiling - _PORT_FLOOR >= 1000:
        if len(_ports_handed_out) > (ceiling - _PORT_FLOOR) // 2:
            _ports_handed_out.clear()
        for _ in range(200):
            port = _port_random.randrange(_PORT_FLOOR, ceiling)
            if port not in _ports_handed_out and _bindable(port):
                _ports_handed_out.add(port)
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None)


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class BrokerProcess:
    """A broker in a child process that can be stopped and started again on the same port."""

    kind: str
    port: int
    workdir: Path
    command: list[str]
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> BrokerAddress:
        return BrokerAddress(self.host, self.port)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.kind}.log"

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.workdir, start_new_session=True)
        if not wait_for_port(self.host, self.port, timeout=30.0):
            self.stop()
            raise BrokerError(f"{self.kind} did not open port {self.port} in 30 s; see "
                              f"{self.log_path}, which ends:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop gracefully (SIGTERM: Mosquitto saves retained messages first)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Stop as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def mosquitto_broker(workdir: Path, port: int | None = None, extra_config: str = "") -> BrokerProcess:
    binary = find_mosquitto()
    if binary is None:
        raise BrokerError("mosquitto is not installed (Debian: apt-get install mosquitto)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        # Mosquitto's default of 1,000 queued messages per client was seen to drop messages
        # for a busy subscriber; a controller or a fleet broadcast needs far more.
        "max_queued_messages 100000\n"
        # no Nagle delay on the broker's side either (see edgewise_mqtt/link.py)
        "set_tcp_nodelay true\n"
        "persistence true\n"
        f"persistence_location {workdir}/\n"
        f"user {getpass.getuser()}\n"
        "log_dest stdout\n"
        "log_type error\nlog_type warning\nlog_type notice\n"
        + extra_config
    )
    return BrokerProcess("mosquitto", port, workdir, [binary, "-c", str(conf)])


def embedded_broker(workdir: Path, port: int | None = None) -> BrokerProcess:
    try:
        import amqtt  # noqa: F401
    except ImportError:
        raise BrokerError("no MQTT broker available: install Mosquitto (apt-get install "
                          "mosquitto) or the embedded one (pip install '.[embedded-broker]' in your Edgewise checkout)"
                          ) from None
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    return BrokerProcess("amqtt", port, workdir,
                         [sys.executable, "-m", "simulator.embedded_broker", "--port", str(port)])


def start_broker(workdir: Path, prefer: str = "mosquitto", port: int | None = None) -> BrokerProcess:
    """Start Mosquitto if installed (or amqtt when ``prefer='amqtt'``), else amqtt."""
    if prefer == "mosquitto" and find_mosquitto() is not None:
        broker = mosquitto_broker(workdir, port)
    else:
        broker = embedded_broker(workdir, port)
    broker.start()
    return broker
