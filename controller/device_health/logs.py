"""Recent log lines fetched from a device over MQTT: a ``logs_req`` out, the ``logs`` reply back.

Every controller replica subscribes to the replies without a shared subscription, so the replica
that asked receives the answer; ``request_id`` matches it to the waiting call. A device that
does not answer (offline, or an agent from before logs on demand) times out with a message that
says so.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from controller.errors import EdgewiseError
from edgewise_wire import LogsReply, LogsRequest, ProtocolError, decode, encode
from edgewise_wire.topics import ROOT, DeviceChannel, device_topic

log = logging.getLogger("edgewise.controller.health")


class DeviceUnreachable(EdgewiseError):
    """The device did not answer in time."""


class LogsRequester:
    """``publish(topic, payload)``: the bridge's MQTT link (qos 1, not retained)."""

    def __init__(self, publish: Callable[[str, bytes], object], *, root: str = ROOT) -> None:
        self.publish = publish
        self.root = root
        self._waiting: dict[str, tuple[str, asyncio.Future[LogsReply]]] = {}
        self.dropped = 0

    def on_reply(self, device_id: str, payload: bytes) -> None:
        """A ``logs`` message arrived (on the bridge's loop)."""
        try:
            reply = decode(payload, LogsReply)
        except ProtocolError as exc:
            self.dropped += 1
            log.warning("dropped logs reply from %s: %s", device_id, exc)
            return
        waiting = self._waiting.get(reply.request_id)
        if waiting is None or waiting[0] != device_id:
            return  # another replica's request, or one that timed out
        fut = waiting[1]
        fut.get_loop().call_soon_threadsafe(_resolve, fut, reply)

    async def fetch(self, device_id: str, since_ts: float, max_lines: int,
                    timeout: float) -> dict[str, Any]:
        request_id = os.urandom(8).hex()
        fut: asyncio.Future[LogsReply] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = (device_id, fut)
        try:
            try:
                self.publish(device_topic(device_id, DeviceChannel.LOGS_REQUEST, root=self.root),
                             encode(LogsRequest(request_id, since_ts, max_lines)))
            except (ConnectionError, OSError) as exc:
                raise DeviceUnreachable(f"cannot ask device {device_id} for its logs: the "
                                        f"controller has no broker connection ({exc})") from None
            reply = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise DeviceUnreachable(
                f"device {device_id} did not send its logs within {timeout:g} s: it is offline, "
                "or its agent is older than logs on demand (upgrade it)") from None
        finally:
            self._waiting.pop(request_id, None)
        return {"device_id": device_id, "lines": reply.lines, "dropped": reply.dropped}


def _resolve(fut: asyncio.Future[LogsReply], reply: LogsReply) -> None:
    if not fut.done():
        fut.set_result(reply)
