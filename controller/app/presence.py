"""One controller per topic root: the controller's identity and its presence on the broker.

Several fleets (controllers, tenants) may share one broker, each under its own topic root. Two
controllers with different databases on the *same* root would both publish desired states to
the same devices and fight over them, silently. So at start a controller reads the retained
``{root}/controller/presence`` (:func:`~edgewise_wire.topics.controller_presence_topic`): if
another controller is online there, it refuses to start, naming that controller. Otherwise the
bridge publishes its own presence, retained, with ``online: false`` as its last will and at a
clean stop.

The identity is the *instance*: a random id stored once in the database (the ``leases`` table,
row ``instance``), so the replicas of one database share it and run side by side, and a
restarted controller is the same instance.

Limits: the check reads what the broker retains at that moment. Two controllers that start
within the wait window of each other both see the root free and both run (the second presence
overwrites the first). A controller whose connection dropped is marked offline by its last will
(after the broker's keep-alive timeout) until it reconnects and publishes itself again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import sqlalchemy as sa

from controller.errors import EdgewiseError
from controller.storage.db import Database
from controller.storage.tables import leases
from edgewise_mqtt.link import BrokerAddress, MqttLink
from edgewise_wire import ControllerPresence, ProtocolError, decode
from edgewise_wire.topics import controller_presence_topic

log = logging.getLogger("edgewise.controller.presence")

INSTANCE_ROW = "instance"  # the name of the row in ``leases`` that holds the instance id


class RootTaken(EdgewiseError):
    """Another controller (another database) runs the fleet under this topic root."""


def instance_id(db: Database) -> str:
    """This database's controller instance id, created at the first call. Stored as the
    ``holder`` of a row that never expires nor is taken over (no lease logic reads it)."""
    with db.write() as conn:
        conn.execute(db.insert_ignore(leases).values(
            name=INSTANCE_ROW, holder=f"ctl-{os.urandom(6).hex()}", expires_at=0.0,
            acquired_at=time.time(), term=0))
        return str(conn.execute(sa.select(leases.c.holder)
                                .where(leases.c.name == INSTANCE_ROW)).scalar_one())


def conflict(seen: ControllerPresence | None, instance: str, root: str) -> str | None:
    """Why this controller must not run under ``root``, given the presence retained there;
    None when it may (nothing there, offline, or the same instance: a replica or a restart)."""
    if seen is None or not seen.online or seen.instance == instance:
        return None
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seen.started_at)) \
        if seen.started_at else "an unknown time"
    replica = f", replica {seen.replica}" if seen.replica else ""
    return (f"another controller (instance {seen.instance}{replica}, started {since}) runs the "
            f"fleet under topic root {root!r} on this broker; this controller is instance "
            f"{instance} (another database). Give it a topic root of its own (--topic-root or "
            f"topic_root, with its agents' topic_root the same), or stop the other controller "
            f"(replicas of one database share its instance and may run together)")


async def read_presence(broker: BrokerAddress, root: str, wait_s: float,
                        timeout_s: float = 10.0) -> ControllerPresence | None:
    """The controller presence retained under ``root``, or None. A short-lived connection of
    its own: nothing is subscribed or published for the fleet before the answer.

    The broker sends a retained message right after the SUBACK; ``wait_s`` bounds the wait for
    it after the SUBACK (nothing comes when nothing is retained)."""
    topic = controller_presence_topic(root=root)
    received: asyncio.Queue[bytes] = asyncio.Queue()

    def on_message(got: str, payload: bytes) -> None:
        if got == topic:
            received.put_nowait(payload)

    link = MqttLink(f"ew-controller-check-{os.getpid()}-{os.urandom(3).hex()}", broker,
                    on_message=on_message)
    try:
        await link.start(timeout=timeout_s)  # BrokerUnreachableError says why it cannot
        await link.subscribe_and_wait(topic, timeout=timeout_s)
        try:
            payload = await asyncio.wait_for(received.get(), wait_s)
        except TimeoutError:
            return None
    finally:
        await link.stop()
    if not payload:
        return None  # a cleared retained message
    try:
        return decode(payload, ControllerPresence)
    except ProtocolError as exc:
        log.warning("ignoring a malformed controller presence on %s: %s", topic, exc)
        return None


async def claim_root(broker: BrokerAddress, root: str, instance: str, wait_s: float) -> None:
    """Raise :class:`RootTaken` (one line: who runs the root, what to do) if another controller
    is online under ``root``."""
    reason = conflict(await read_presence(broker, root, wait_s), instance, root)
    if reason is not None:
        raise RootTaken(reason)
