"""The baseline for fan-out: plain paho clients on one asyncio loop, and a plain publisher.

No Edgewise code runs here: the subscribers only count bytes, the publisher (its own process,
like the controller) only publishes. What this measures is what the broker, the loopback and
paho on one event loop allow; Edgewise's rollout is compared with it in the same run.

Run as a script, this file is the publisher::

    python bench/raw_mqtt.py publish --port 1883 --topic bench/x --size 1048576 --chunk 65536

It connects, prints ``ready``, waits for a line on stdin, publishes the bytes (QoS 1, as many
in flight as paho allows), waits for every PUBACK, prints ``done SECONDS`` and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MAX_INFLIGHT = 1000


class LoopClient:
    """One paho client whose socket is driven by the running asyncio loop (paho's
    ``examples/loop_asyncio.py`` pattern), counting the payload bytes it receives."""

    def __init__(self, client_id: str, host: str, port: int, topic: str, expect_bytes: int,
                 on_complete: Any, store: Path | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        # with ``store``: check each message's sha256 and write it at its offset in a file of
        # this subscriber's own, the least work any verified download must do
        self._fd = os.open(store, os.O_WRONLY | os.O_CREAT, 0o600) if store else None
        self.digests: list[str] = []
        self.topic = topic
        self.expect = expect_bytes
        self.received = 0
        self.complete_at: float | None = None
        self._on_complete = on_complete
        self.subscribed = self.loop.create_future()
        self._misc: asyncio.Task[None] | None = None
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv311, clean_session=True)
        c.max_inflight_messages_set(MAX_INFLIGHT)
        c.on_connect = self._connected
        c.on_subscribe = self._suback
        c.on_message = self._message
        c.on_socket_open = lambda cl, ud, s: self.loop.add_reader(s, cl.loop_read)
        loop = self.loop

        def unwatch_read(cl: mqtt.Client, ud: Any, s: Any) -> None:
            loop.remove_reader(s)

        def unwatch_write(cl: mqtt.Client, ud: Any, s: Any) -> None:
            loop.remove_writer(s)

        c.on_socket_close = unwatch_read
        c.on_socket_register_write = lambda cl, ud, s: self.loop.add_writer(s, cl.loop_write)
        c.on_socket_unregister_write = unwatch_write
        self.client = c
        c.connect(host, port, keepalive=60)
        self._misc = self.loop.create_task(self._misc_loop())

    async def _misc_loop(self) -> None:
        while self.client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:
            await asyncio.sleep(1.0)

    def _connected(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                   properties: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _suback(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                properties: Any) -> None:
        if not self.subscribed.done():
            self.subscribed.set_result(None)

    def _message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._fd is not None:
            data = bytes(msg.payload)
            self.digests.append(hashlib.sha256(data).hexdigest())
            os.pwrite(self._fd, data, self.received)
        self.received += len(msg.payload)
        if self.complete_at is None and self.received >= self.expect:
            self.complete_at = time.perf_counter()
            self._on_complete()

    def close(self) -> None:
        if self._misc is not None:
            self._misc.cancel()
        sock = self.client.socket()
        if sock is not None:
            self.loop.remove_reader(sock)
            self.loop.remove_writer(sock)
        c = self.client
        c.on_socket_open = c.on_socket_close = None
        c.on_socket_register_write = c.on_socket_unregister_write = None
        c.disconnect()  # without the loop callbacks paho writes the DISCONNECT itself
        if self._fd is not None:
            os.close(self._fd)


@dataclass
class RawFanout:
    """Result of one raw fan-out: seconds until the last subscriber had every byte."""

    subscribers: int
    payload_bytes: int
    chunk_bytes: int
    seconds: float
    publish_seconds: float
    connect_seconds: float
    cpu_seconds: float  # this process (the subscribers) during the fan-out
    per_subscriber: list[float] = field(default_factory=list, repr=False)


async def raw_fanout(host: str, port: int, subscribers: int, payload_bytes: int,
                     chunk_bytes: int, *, timeout: float = 300.0,
                     concurrency: int = 100, sequential: bool = False,
                     store_dir: Path | None = None,
                     payload_file: Path | None = None) -> RawFanout:
    """N plain subscribers on this loop; a publisher process sends ``payload_bytes`` in
    messages of ``chunk_bytes`` (QoS 1); time from the go signal to the last full receipt.
    With ``store_dir`` each subscriber also checks a sha256 per message and writes the bytes to
    its own file there. With ``payload_file`` the publisher sends that file's bytes (the first
    ``payload_bytes`` of them) instead of random ones."""
    run = os.urandom(4).hex()
    topic = f"bench/raw/{run}/+"
    done = asyncio.Event()
    remaining = [subscribers]

    def complete() -> None:
        remaining[0] -= 1
        if remaining[0] == 0:
            done.set()

    publisher = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "publish", "--host", host, "--port",
         str(port), "--topic", f"bench/raw/{run}", "--size", str(payload_bytes), "--chunk",
         str(chunk_bytes), *(["--sequential"] if sequential else []),
         *(["--file", str(payload_file)] if payload_file else [])], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    clients: list[LoopClient] = []
    try:
        started = time.perf_counter()
        gate = asyncio.Semaphore(concurrency)

        async def connect(i: int) -> None:
            async with gate:
                client = LoopClient(f"raw-{run}-{i}", host, port, topic, payload_bytes, complete,
                                    store_dir / f"raw-{i}.part" if store_dir else None)
                clients.append(client)
                await asyncio.wait_for(client.subscribed, 30)

        await asyncio.gather(*(connect(i) for i in range(subscribers)))
        connect_seconds = time.perf_counter() - started
        assert publisher.stdin is not None and publisher.stdout is not None
        line = await asyncio.to_thread(publisher.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"raw publisher did not start: {line!r}")
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        publisher.stdin.write("go\n")
        publisher.stdin.flush()
        await asyncio.wait_for(done.wait(), timeout)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        line = await asyncio.to_thread(publisher.stdout.readline)
        publish_seconds = float(line.split()[1]) if line.startswith("done") else float("nan")
        per = sorted(c.complete_at - t0 for c in clients if c.complete_at is not None)
        return RawFanout(subscribers, payload_bytes, chunk_bytes, seconds, publish_seconds,
                         connect_seconds, cpu, per)
    finally:
        for client in clients:
            client.close()
        publisher.kill()
        publisher.wait()


def _publish_main(args: argparse.Namespace) -> None:
    payload = Path(args.file).read_bytes()[:args.size] if args.file else os.urandom(args.size)
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=f"raw-pub-{os.getpid()}", protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(MAX_INFLIGHT)
    client.connect(args.host, args.port, keepalive=60)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    infos = []
    for i in range(0, len(payload), args.chunk):
        infos.append(client.publish(f"{args.topic}/{i // args.chunk}", payload[i:i + args.chunk],
                                    qos=1))
        if args.sequential:  # one PUBACK at a time, as Edgewise's chunk server paces itself
            infos[-1].wait_for_publish(60)
    for info in infos:
        info.wait_for_publish(60)
    print(f"done {time.perf_counter() - t0:.4f}", flush=True)
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="raw MQTT publisher for the fan-out baseline")
    parser.add_argument("mode", choices=["publish"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--chunk", type=int, required=True)
    parser.add_argument("--sequential", action="store_true",
                        help="wait for each PUBACK before the next publish")
    parser.add_argument("--file", help="publish this file's bytes instead of random ones")
    _publish_main(parser.parse_args())
