"""One paho-mqtt client driven by the running asyncio loop: no threads, no ``select()``.

paho's own ``loop_start()`` runs a thread per client around ``select()``, which fails past file
descriptor 1024 (about 340 clients in one process). Here paho's socket callbacks register the
socket with the event loop instead (the pattern of paho's ``examples/loop_asyncio.py``), so one
loop can drive a thousand clients: the simulator's whole fleet, or the controller's bridge.

The link reconnects by itself with jittered exponential backoff. Reliability does not depend on
the broker's session: every Edgewise exchange is acknowledged at application level (telemetry
acks, reported state republished on connect, chunk requests repeated), so clean sessions are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger("edgewise.mqtt")

MessageHandler = Callable[[str, bytes], None]


@dataclass(frozen=True)
class BrokerAddress:
    host: str = "127.0.0.1"
    port: int = 1883
    protocol: int = 4  # MQTT 3.1.1 (4) works on every broker, amqtt included; 5 for MQTT 5
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @classmethod
    def parse(cls, text: str, **kwargs: Any) -> BrokerAddress:
        """Parse ``host:port`` (port defaults to 1883)."""
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "1883")
        if not host or not port.isdigit():
            raise ValueError(f"broker address {text!r} must look like HOST:PORT")
        return cls(host=host, port=int(port), **kwargs)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class BrokerUnreachableError(TimeoutError):
    """The broker did not accept the connection in time; the message names it and the last
    reason (refused, unknown host, bad credentials, ...). A TimeoutError, as before."""


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class MqttLink:
    """An MQTT connection on the current event loop, with reconnect.

    ``on_message(topic, payload)`` runs on the loop for every message; ``on_connect()`` runs after
    every successful (re)connect, which is where subscriptions and retained state are (re)sent.

    ``max_inflight`` bounds the QoS 1 publishes awaiting their PUBACK; 0 is no bound. A
    high-rate publisher (the controller's acks, a load generator) wants 0: with a bound, paho
    walks every unacknowledged message on each PUBACK to find queued ones, so n messages out
    cost O(n) per PUBACK (a quarter of the controller's event loop at 2,000 acks/s). MQTT 3.1.1
    has no flow control of its own; TCP's paces the socket either way.
    """

    def __init__(
        self,
        client_id: str,
        broker: BrokerAddress,
        *,
        on_message: MessageHandler,
        on_connect: Callable[[], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        will: Will | None = None,
        keepalive: int = 30,
        max_inflight: int = 100,
        reconnect_min_s: float = 0.2,
        reconnect_max_s: float = 15.0,
    ) -> None:
        self.client_id = client_id
        self.broker = broker
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._keepalive = keepalive
        self._reconnect_min = reconnect_min_s
        self._reconnect_max = reconnect_max_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._misc_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._sock: Any = None
        self._write_scheduled = False
        self._writer_added = False  # the socket waits in the loop for writability
        self._stopping = False
        self._connected_event: asyncio.Event | None = None
        self._pending_subs: dict[int, asyncio.Future[None]] = {}
        self._pending_pubs: dict[int, asyncio.Future[None]] = {}
        # subscriptions made with subscribe() (no one waits for them): mid -> (topic, qos, tries)
        self._fire_subs: dict[int, tuple[str, int, int]] = {}
        # subscriptions the broker refused (a failure code in SUBACK); subscribe() retries them
        self.subscribe_refused = 0
        self.connected = False
        self.connect_count = 0
        # why the last attempt to connect failed, for the error a caller sees
        self.last_error: str | None = None
        self.messages_in = 0
        self.handler_errors = 0
        # the last measured publish -> PUBACK time; one publish at a time is timed
        self.rtt_ms: float | None = None
        self._rtt_probe: tuple[int, float] | None = None  # (mid, monotonic send time)
        # why the broker cannot be reached, logged once per change of cause (not per retry)
        self.connect_failure: str | None = None
        self._caller_waiting = False

        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if broker.protocol == 5 else mqtt.MQTTv311,
            clean_session=None if broker.protocol == 5 else True,
        )
        client.max_inflight_messages_set(max_inflight)
        if broker.username:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls_ca:
            client.tls_set(ca_certs=broker.tls_ca, certfile=broker.tls_cert, keyfile=broker.tls_key)
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_subscribe
        client.on_publish = self._handle_publish
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._socket_register_write
        client.on_socket_unregister_write = self._socket_unregister_write
        self.client = client

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, *, wait: bool = True, timeout: float = 10.0) -> None:
        """Connect; with ``wait``, return once the broker accepted the connection."""
        self._loop = asyncio.get_running_loop()
        self._connected_event = asyncio.Event()
        self._stopping = False
        # a caller that waits reports a failure itself (BrokerUnreachableError): meanwhile the
        # link's own warnings would say the same thing again
        self._caller_waiting = wait
        try:
            if not self._try_connect():
                self._schedule_reconnect()
            if wait:
                try:
                    await asyncio.wait_for(self._connected_event.wait(), timeout)
                except TimeoutError:
                    raise BrokerUnreachableError(
                        f"cannot reach the MQTT broker at {self.broker} within {timeout:g} s"
                        + (f" ({self.last_error})" if self.last_error else "")) from None
        finally:
            self._caller_waiting = False

    async def wait_connected(self, timeout: float | None = None) -> None:
        assert self._connected_event is not None, "start() first"
        await asyncio.wait_for(self._connected_event.wait(), timeout)

    async def stop(self) -> None:
        """Disconnect cleanly: the broker does not publish the last will."""
        self._stopping = True
        if self._reconnect_task:
            self._reconnect_task.cancel()
        if self.connected:
            self.client.disconnect()
            for _ in range(50):  # let the DISCONNECT packet leave
                if self._sock is None:
                    break
                await asyncio.sleep(0.01)
        self._teardown_socket()

    def kill(self) -> None:
        """Drop the TCP connection without DISCONNECT, as a crash would: the last will fires."""
        self._stopping = True
        if self._reconnect_task:
            self._reconnect_task.cancel()
        sock = self._sock
        self._teardown_socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self.connected = False

    def drop_connection(self) -> None:
        """Cut the connection as a flaky link would; the link reconnects by itself."""
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- publish / subscribe -----------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        """Queue a message; returns paho's result code (0 when queued on a live connection)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos and self._rtt_probe is None and info.rc == mqtt.MQTT_ERR_SUCCESS:
            self._rtt_probe = (info.mid, time.monotonic())
        return int(info.rc)

    def publish_threadsafe(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish from any thread: the publish runs on the link's loop (paho's socket
        callbacks schedule work on it, which only its own thread may do)."""
        loop = self._loop
        if loop is None:
            raise ConnectionError(f"{self.client_id}: not started")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.publish(topic, payload, qos)
        else:
            loop.call_soon_threadsafe(self.publish, topic, payload, qos)

    async def publish_and_wait(self, topic: str, payload: bytes, qos: int = 1,
                               retain: bool = False, timeout: float = 10.0) -> None:
        """Publish and wait for the broker's PUBACK (qos 1)."""
        assert self._loop is not None
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        if qos == 0 or info.is_published():
            return
        fut: asyncio.Future[None] = self._loop.create_future()
        self._pending_pubs[info.mid] = fut
        if info.is_published():  # acknowledged between publish() and registering the future
            self._pending_pubs.pop(info.mid, None)
            return
        await asyncio.wait_for(fut, timeout)

    def subscribe(self, topic: str, qos: int = 1, *, _tries: int = 0) -> None:
        """Subscribe without waiting. A subscription the broker refuses is tried again while
        connected (1 s, doubling up to 30 s): a clustered broker (NATS) refuses one when it
        cannot set it up in time, and a device must not stay deaf to its desired state."""
        rc, mid = self.client.subscribe(topic, qos)
        if rc == mqtt.MQTT_ERR_SUCCESS and mid is not None:
            self._fire_subs[mid] = (topic, qos, _tries)

    def _retry_subscribe(self, topic: str, qos: int, tries: int, connection: int) -> None:
        if self.connected and not self._stopping and self.connect_count == connection:
            self.subscribe(topic, qos, _tries=tries)

    async def subscribe_and_wait(self, topic: str, qos: int = 1, timeout: float = 10.0) -> None:
        assert self._loop is not None
        rc, mid = self.client.subscribe(topic, qos)
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise ConnectionError(f"subscribe to {topic} failed: {mqtt.error_string(rc)}")
        fut: asyncio.Future[None] = self._loop.create_future()
        self._pending_subs[mid] = fut
        await asyncio.wait_for(fut, timeout)

    def unsubscribe(self, topic: str) -> None:
        self.client.unsubscribe(topic)

    # -- paho callbacks (all run on the loop, inside loop_read/loop_write) -----------------------

    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                        properties: Any) -> None:
        if reason.is_failure:
            self._connect_failed(f"the broker refused the connection: {reason}")
            return
        if self.connect_failure is not None:
            log.info("%s: connected to broker %s (before: %s)", self.client_id, self.broker,
                        self.connect_failure)
            self.connect_failure = None
        self.connected = True
        self.connect_count += 1
        if self._connected_event is not None:
            self._connected_event.set()
        if self._on_connect is not None:
            try:
                self._on_connect()
            except Exception:
                log.exception("%s: on_connect handler failed", self.client_id)

    def _handle_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                           properties: Any) -> None:
        was_connected = self.connected
        self.connected = False
        if self._connected_event is not None:
            self._connected_event.clear()
        for fut in list(self._pending_subs.values()) + list(self._pending_pubs.values()):
            if not fut.done():
                fut.set_exception(ConnectionError("disconnected"))
        self._pending_subs.clear()
        self._pending_pubs.clear()
        self._fire_subs.clear()  # on_connect subscribes again
        self._rtt_probe = None
        if was_connected and self._on_disconnect is not None:
            try:
                self._on_disconnect()
            except Exception:
                log.exception("%s: on_disconnect handler failed", self.client_id)
        if not self._stopping:
            self._schedule_reconnect()

    def _handle_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages_in += 1
        try:
            self._on_message(msg.topic, bytes(msg.payload))
        except Exception:
            # A handler bug must never take the connection down: count it, log it, go on.
            self.handler_errors += 1
            log.exception("%s: handler failed on %s", self.client_id, msg.topic)

    def _handle_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                          properties: Any) -> None:
        failed = [r for r in reasons if getattr(r, "is_failure", False)]
        if failed:
            self.subscribe_refused += 1
        fire = self._fire_subs.pop(mid, None)
        if fire is not None and failed and self._loop is not None:
            topic, qos, tries = fire
            delay = min(1.0 * 2 ** tries, 30.0)
            log.warning("%s: the broker refused the subscription to %s (%s); trying again in "
                        "%.0f s", self.client_id, topic, failed[0], delay)
            self._loop.call_later(delay, self._retry_subscribe, topic, qos, tries + 1,
                                  self.connect_count)
        fut = self._pending_subs.pop(mid, None)
        if fut is None or fut.done():
            return
        if failed:
            fut.set_exception(PermissionError(f"subscription refused by the broker: {failed[0]}"))
        else:
            fut.set_result(None)

    def _handle_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                        properties: Any) -> None:
        probe = self._rtt_probe
        if probe is not None and probe[0] == mid:
            self.rtt_ms = (time.monotonic() - probe[1]) * 1000.0
            self._rtt_probe = None
        fut = self._pending_pubs.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._sock = sock
        # paho leaves Nagle on: a small packet (a PUBACK, a report) behind a partly sent one
        # then waits for the peer's delayed ACK, ~40 ms on Linux, seen as gaps in chunk streams
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._loop.add_reader(sock, client.loop_read)
        if self._misc_task is None or self._misc_task.done():
            self._misc_task = self._loop.create_task(self._misc_loop())

    def _socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock)
                self._loop.remove_writer(sock)
        self._writer_added = False
        if self._sock is sock:
            self._sock = None

    def _socket_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # Write on the next loop iteration rather than waiting for writability: the socket is
        # almost always writable, and registering it costs two epoll_ctl calls per outgoing
        # packet (a thousand agents acknowledging chunks on one loop). Only a full socket
        # buffer falls back to add_writer (in _write_soon).
        assert self._loop is not None
        if not self._write_scheduled:
            self._write_scheduled = True
            self._loop.call_soon(self._write_soon)

    def _write_soon(self) -> None:
        # the current socket, not the one of the request: after a reconnect paho registers the
        # new socket while this call may still be pending for the old one
        self._write_scheduled = False
        sock = self._sock
        if sock is None or self._loop is None:
            return  # closed; paho registers again for the next socket
        self.client.loop_write()
        if self._sock is sock and self.client.want_write():
            self._loop.add_writer(sock, self.client.loop_write)
            self._writer_added = True

    def _socket_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # paho calls this after every write that emptied its queue: only a socket that waited
        # for writability (rare) is in the loop's writers, and removing it costs a lookup
        if self._writer_added:
            assert self._loop is not None
            self._loop.remove_writer(sock)
            self._writer_added = False

    # -- internals ---------------------------------------------------------------------------

    def _teardown_socket(self) -> None:
        if self._misc_task is not None:
            self._misc_task.cancel()
            self._misc_task = None
        if self._sock is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._sock)
                self._loop.remove_writer(self._sock)
        self._writer_added = False

    async def _misc_loop(self) -> None:
        # keepalive pings and retry timers; paho returns an error once the socket is gone
        while self.client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:
            await asyncio.sleep(1.0)

    def _try_connect(self) -> bool:
        try:
            if self.connect_count == 0 and self._sock is None:
                self.client.connect(self.broker.host, self.broker.port, self._keepalive)
            else:
                self.client.reconnect()
            return True
        except (OSError, mqtt.WebsocketConnectionError) as exc:
            self._connect_failed(describe_connect_error(exc))
            return False

    def _connect_failed(self, cause: str) -> None:
        """Log why the broker cannot be reached at WARNING, once per cause: a device that is
        wrongly enrolled says so in its journal without a line per retry."""
        self.last_error = cause
        if self._caller_waiting:
            log.debug("%s: cannot connect to broker %s: %s", self.client_id, self.broker, cause)
            return
        if cause != self.connect_failure:
            log.warning("%s: cannot connect to broker %s: %s (retrying; logged again when the "
                        "cause changes)", self.client_id, self.broker, cause)
        self.connect_failure = cause

    def _schedule_reconnect(self) -> None:
        if self._stopping or self._loop is None:
            return
        if self._reconnect_task is not None and not self._reconnect_task.done():
            return
        self._reconnect_task = self._loop.create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        delay = self._reconnect_min
        while not self._stopping and not self.connected:
            # jitter spreads a thousand devices that lost the same broker over time
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            if self._stopping or self.connected:
                return
            if self._sock is None and self._try_connect():
                # wait for CONNACK (or for the socket to close again) before backing off further
                for _ in range(int(5 / 0.05)):
                    if self.connected or self._sock is None:
                        break
                    await asyncio.sleep(0.05)
            delay = min(delay * 2, self._reconnect_max)


def describe_connect_error(exc: BaseException) -> str:
    """A connection error in words that point at the cause (DNS, refused, TLS, timeout)."""
    import ssl  # here: only a failure pays for it

    if isinstance(exc, socket.gaierror):
        return f"the host name does not resolve (DNS): {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "connection timed out"
    return f"{type(exc).__name__}: {exc}"
