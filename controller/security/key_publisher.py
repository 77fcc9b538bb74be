"""Publishes the controller's key update (:mod:`edgewise_wire.key_update`), retained, on the
fleet-wide topic ``{root}/trust/keys``: at every (re)connection to the broker and within a second
of any change to ``signing-keys/keys.json`` (``edgewise keys create|activate|retire|rotate``
on the controller host), so devices add and retire signing keys over the air.

Retained: a device that is offline during a rotation gets the latest update when it reconnects,
before its retained desired state (the agent subscribes to the key topic first). The update is
the whole set, signed by every key the controller holds (retired ones included), so the latest
one alone brings a device up to date however many it missed. Several replicas publish the same
bytes for the same ``keys.json`` (Ed25519 signatures are deterministic).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from controller.security.signing import sign_key_update
from controller.security.signing_keys import SigningKeys
from edgewise_wire import encode
from edgewise_wire.key_update import KeyUpdateMessage
from edgewise_wire.topics import ROOT, keys_topic

log = logging.getLogger("edgewise.controller.signing")

POLL_S = 1.0


class KeyUpdatePublisher:
    """``publish(topic, payload)``: publish retained (on the loop that drives the MQTT link);
    ``connection()``: a number that changes at each (re)connection, None while disconnected."""

    def __init__(self, keys: SigningKeys, publish: Callable[[str, bytes], object],
                 connection: Callable[[], int | None], *, root: str = ROOT) -> None:
        self.keys = keys
        self.topic = keys_topic(root=root)
        self._publish = publish
        self._connection = connection
        self._published: tuple[tuple[int, int, int] | None, int] | None = None
        self.sequence: int | None = None  # of the update published last

    def message(self) -> KeyUpdateMessage:
        update, pems = self.keys.key_update()
        return KeyUpdateMessage(update, sign_key_update(pems, update))

    def poll(self) -> bool:
        """Publish if keys.json changed or the link reconnected since the last publish."""
        connection = self._connection()
        if connection is None:
            return False
        try:
            st = os.stat(self.keys.dir / "keys.json")
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if self._published == (stamp, connection) or stamp is None:
            return False
        message = self.message()
        self._publish(self.topic, encode(message))
        self._published = (stamp, connection)
        if self.sequence != message.update["sequence"]:
            log.info("published key update %d: trusted %s, retired %s",
                     message.update["sequence"], ", ".join(message.update["trusted"]),
                     ", ".join(message.update["retired"]) or "none")
        self.sequence = message.update["sequence"]
        return True

    async def run(self) -> None:
        while True:
            try:
                self.poll()
            except Exception:  # a half-written key file, say: try again at the next poll
                log.exception("key update not published")
            await asyncio.sleep(POLL_S)
