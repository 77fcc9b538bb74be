"""A NATS cluster with its MQTT listener, on one machine, for the tests and the benchmarks.

Each node is a ``nats-server`` process of its own (a :class:`~simulator.broker.BrokerProcess`
whose port is the node's MQTT port, so it can be killed and started again like Mosquitto) with:

* a client port, a cluster (route) port and a monitoring port, all free ports on 127.0.0.1;
* JetStream, which NATS needs for MQTT: sessions, retained messages and QoS 1 messages are kept
  in JetStream streams, replicated over the cluster (three replicas with three nodes);
* a ``server_name`` (required by JetStream in a cluster) and routes to every other node.

:meth:`NatsCluster.wait_ready` waits until every live node accepts an MQTT connection: the first
connection of a cluster waits for the JetStream meta leader and creates the MQTT streams, which
takes about two seconds here.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from edgewise_mqtt.link import BrokerAddress
from simulator.broker import BrokerError, BrokerProcess, free_port


def find_nats_server() -> str | None:
    return shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/local/bin/nats-server") if os.path.exists(p)),
        None)


@dataclass
class NatsNode:
    name: str
    mqtt_port: int
    client_port: int
    cluster_port: int
    http_port: int
    process: BrokerProcess

    @property
    def address(self) -> BrokerAddress:
        return self.process.address

    @property
    def alive(self) -> bool:
        proc = self.process.proc
        return proc is not None and proc.poll() is None


# What Edgewise needs from NATS's MQTT layer (measured on the tests of tests/e2e/broker_cluster):
# * the streams' replica count is set explicitly: left to NATS it is the number of JetStream peers
#   known when the first MQTT client connects, which was 2 of 3 here, and a 2-replica stream has
#   no quorum once either node dies (every retained or QoS 1 publish then timed out);
# * each QoS 1 subscription of an MQTT client is a JetStream consumer. Filed on disk (the
#   default), creating one took over 4 s on a busy machine and failed ("timeout for request type
#   CC"): the client gets a refused SUBACK (MqttLink subscribes again). In memory it is cheaper.
#   One replica (``consumer_replicas: 1``) is cheaper still but dies with the node that holds it,
#   while the client, connected to another node, keeps a subscription that delivers nothing:
#   devices then missed their desired state after a node was killed. So: replicated, in memory.
EDGEWISE_MQTT_OPTIONS = "stream_replicas: 3, consumer_memory_storage: true"
NATS_DEFAULT_MQTT_OPTIONS = ""


def node_config(node: NatsNode, workdir: Path, cluster_name: str, routes: list[int],
                extra: str = "", mqtt_options: str = EDGEWISE_MQTT_OPTIONS) -> str:
    route_urls = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
    return (
        f"server_name: {node.name}\n"
        f"listen: 127.0.0.1:{node.client_port}\n"
        f"http: 127.0.0.1:{node.http_port}\n"
        f'jetstream {{ store_dir: "{workdir}/js", max_memory_store: 256MB, '
        "max_file_store: 2GB }\n"
        f"cluster {{ name: {cluster_name}, listen: 127.0.0.1:{node.cluster_port}, "
        f"routes: [{route_urls}] }}\n"
        f"mqtt {{ listen: 127.0.0.1:{node.mqtt_port}"
        + (f", {mqtt_options}" if mqtt_options else "") + " }\n"
        + extra
    )


@dataclass
class NatsCluster:
    """``size`` nats-server nodes in one cluster, each with an MQTT listener."""

    workdir: Path
    size: int = 3
    cluster_name: str = "edgewise"
    extra_config: str = ""
    mqtt_options: str = EDGEWISE_MQTT_OPTIONS
    nodes: list[NatsNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        binary = find_nats_server()
        if binary is None:
            raise BrokerError("nats-server is not installed (Debian: apt-get install nats-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = [(free_port(), free_port(), free_port(), free_port()) for _ in range(self.size)]
        routes = [p[2] for p in ports]
        for i, (mqtt, client, cluster, http) in enumerate(ports):
            name = f"ew-n{i + 1}"
            nodedir = self.workdir / name
            nodedir.mkdir(exist_ok=True)
            conf = nodedir / "nats.conf"
            process = BrokerProcess(f"nats-{name}", mqtt, nodedir, [binary, "-c", str(conf)])
            node = NatsNode(name, mqtt, client, cluster, http, process)
            conf.write_text(node_config(node, nodedir, self.cluster_name,
                                        [r for r in routes if r != cluster], self.extra_config,
                                        self.mqtt_options))
            self.nodes.append(node)

    @property
    def addresses(self) -> list[BrokerAddress]:
        return [n.address for n in self.nodes]

    def start(self, timeout: float = 60.0) -> None:
        for node in self.nodes:
            node.process.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the JetStream meta group has a leader and knows every node, then until
        every live node completes an MQTT handshake (the first one creates the MQTT streams)."""
        deadline = time.monotonic() + timeout
        live = [n for n in self.nodes if n.alive]
        while not any(meta_ready(n.http_port, len(self.nodes)) for n in live):
            if time.monotonic() > deadline:
                raise BrokerError(f"the NATS cluster formed no JetStream group of "
                                  f"{len(self.nodes)} in {timeout:g} s; see {self.workdir}")
            time.sleep(0.2)
        for node in self.nodes:
            if not node.alive:
                continue
            while not mqtt_handshake(node.mqtt_port):
                if time.monotonic() > deadline:
                    raise BrokerError(f"NATS node {node.name} accepts no MQTT connection after "
                                      f"{timeout:g} s; see {node.process.log_path}")
                time.sleep(0.2)

    def kill(self, index: int) -> None:
        """SIGKILL one node, as a crash would."""
        self.nodes[index].process.kill()

    def restart(self, index: int) -> None:
        self.nodes[index].process.start()
        self.wait_ready()

    def stop(self) -> None:
        for node in self.nodes:
            node.process.stop()

    def log(self, index: int) -> str:
        path = self.nodes[index].process.log_path
        return path.read_text(errors="replace") if path.exists() else ""


def meta_ready(http_port: int, size: int) -> bool:
    """True when this node's /jsz shows a JetStream meta leader and ``size`` peers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/jsz", timeout=2) as r:
            meta = json.load(r).get("meta_cluster") or {}
    except (OSError, ValueError):
        return False
    return bool(meta.get("leader")) and int(meta.get("cluster_size", 0)) >= size


# an MQTT 3.1.1 CONNECT with clean session, keepalive 10 s and a fixed client id
_PROBE_ID = b"ew-nats-probe"
_CONNECT = (bytes([0x10, 10 + 2 + len(_PROBE_ID)]) + b"\x00\x04MQTT\x04\x02\x00\x0a"
            + len(_PROBE_ID).to_bytes(2, "big") + _PROBE_ID)


def mqtt_handshake(port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> bool:
    """True when the broker answers CONNECT with a successful CONNACK."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(_CONNECT)
            reply = s.recv(4)
            ok = len(reply) == 4 and reply[0] == 0x20 and reply[3] == 0
            if ok:
                s.sendall(b"\xe0\x00")  # DISCONNECT
            return ok
    except OSError:
        return False
