"""The group commit under a SIGKILL: nothing lost, nothing doubled, no ack before its commit.

Simulated outboxes publish batches over a real Mosquitto to the real ingest (bridge + telemetry
store, :mod:`tests.harness.ingest_process`) whose every COMMIT is held back a moment. The
process is SIGKILLed while a group's transaction is open (its rows written, not committed).
Then: every batch acknowledged before the kill is in the database whole. The process restarts,
the outboxes send again what was not acknowledged (and, as after a reconnect, some of what was),
and the database ends with every produced (device, epoch, seq) exactly once.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from controller.storage.db import Database
from controller.storage.tables import telemetry
from edgewise_wire import Ack, TelemetryBatch, decode, encode
from simulator.broker import BrokerProcess
from tests.harness.fixtures import fresh_database
from tests.harness.waiting import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]

DEVICES = 6
BATCHES = 12  # per device
PER_BATCH = 40


class Outboxes:
    """Several devices' outboxes as the controller sees them: batches sent until acknowledged."""

    def __init__(self, broker: BrokerProcess, prefix: str) -> None:
        self.prefix = prefix
        self.acks: queue.Queue[tuple[str, Ack]] = queue.Queue()
        self.acked: set[tuple[str, int]] = set()  # (device, first seq)
        self.batches: dict[tuple[str, int], bytes] = {}
        self.epochs = {f"{prefix}-{d}": 1000 + d for d in range(DEVICES)}
        for device, epoch in self.epochs.items():
            for b in range(BATCHES):
                first = b * PER_BATCH + 1
                records = [{"seq": s, "kind": "prediction", "ts": time.time(), "model": "m",
                            "version": 1, "prediction_id": f"{device}-{s}", "latency_ms": 0.2,
                            "label": s % 3} for s in range(first, first + PER_BATCH)]
                self.batches[(device, first)] = encode(TelemetryBatch(
                    first, first + PER_BATCH - 1, records, epoch=epoch))
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"ew-test-outboxes-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe("ew/v1/dev/+/ack", qos=1)
        assert subscribed.wait(10), "no SUBACK"
        self._lock = threading.Lock()

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        device = m.topic.split("/")[3]
        ack = decode(bytes(m.payload), Ack)
        with self._lock:
            if ack.epoch == self.epochs.get(device):
                self.acked.add((device, ack.first_seq))

    def acked_now(self) -> set[tuple[str, int]]:
        with self._lock:
            return set(self.acked)

    def send(self, *, also_acked: bool = False, produced: int | None = None) -> None:
        """Publish every batch not acknowledged (and the acknowledged ones too, if asked) of
        the first ``produced`` (default: all)."""
        done = self.acked_now()
        for key, payload in list(self.batches.items())[:produced]:
            if also_acked or key not in done:
                self.client.publish(f"ew/v1/dev/{key[0]}/telemetry", payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def expected_keys(box: Outboxes) -> set[tuple[str, int, int]]:
    return {(device, box.epochs[device], s) for (device, first) in box.batches
            for s in range(first, first + PER_BATCH)}


def stored_keys(url: str, prefix: str) -> list[tuple[str, int, int]]:
    db = Database(url)
    try:
        with db.read() as conn:
            rows = conn.execute(sa.select(telemetry.c.device_id, telemetry.c.epoch,
                                          telemetry.c.seq)
                                .where(telemetry.c.device_id.like(f"{prefix}-%"))).all()
        return [(str(d), int(e), int(s)) for d, e, s in rows]
    finally:
        db.dispose()


def start(url: str, broker: BrokerProcess, log: Path, *delay: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.harness.ingest_process", "--db", url,
         "--broker", f"{broker.host}:{broker.port}", *delay],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "controller.db")
        return
    with fresh_database(request.getfixturevalue("pg_admin")) as url:
        yield url


def test_sigkill_mid_group_commit_loses_and_doubles_nothing(
        fresh_broker: BrokerProcess, db_url: str, tmp_path: Path) -> None:
    prefix = f"gk{uuid.uuid4().hex[:5]}"
    marker = tmp_path / "committing"
    log = tmp_path / "ingest.log"
    box = Outboxes(fresh_broker, prefix)
    proc = start(db_url, fresh_broker, log, "--commit-delay", "0.3", "--marker", str(marker))
    try:
        produced = 0

        def some_acked_and_committing() -> bool:
            nonlocal produced
            if proc.poll() is not None:
                raise AssertionError(f"the ingest exited; see {log}")
            # the outboxes fill as time goes on; until the ingest has subscribed, what is sent
            # is lost: send what is not acknowledged again
            produced = min(produced + 2, len(box.batches) - 1)
            box.send(produced=produced)
            marker.unlink(missing_ok=True)
            time.sleep(0.1)
            return len(box.acked_now()) >= 3 and marker.exists()

        wait_for(some_acked_and_committing, 60, "acks, then a group commit under way")
        os.kill(proc.pid, signal.SIGKILL)  # the marker is fresh: a transaction is open now
        proc.wait(10)
        acked = box.acked_now()
        assert len(acked) < len(box.batches), "everything was acknowledged before the kill"

        # no ack before its commit: every batch acknowledged is stored whole
        have = set(stored_keys(db_url, prefix))
        missing = {(d, box.epochs[d], s) for d, first in acked
                   for s in range(first, first + PER_BATCH)} - have
        assert not missing, f"{len(missing)} acknowledged records are not stored"

        proc = start(db_url, fresh_broker, log)
        box.send(also_acked=True)  # a reconnecting outbox resends what it sent

        def all_acked() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the ingest exited; see {log}")
            if len(box.acked_now()) == len(box.batches):
                return True
            box.send()
            time.sleep(0.5)
            return False

        wait_for(all_acked, 120, lambda: f"{len(box.acked_now())} of {len(box.batches)} acks")
        keys = stored_keys(db_url, prefix)
        assert len(keys) == len(set(keys)) == DEVICES * BATCHES * PER_BATCH
        assert set(keys) == expected_keys(box)
    finally:
        box.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    # the payloads are the agents' records, whole
    db = Database(db_url)
    try:
        with db.read() as conn:
            row = conn.execute(sa.select(telemetry.c.payload_json, telemetry.c.prediction_id)
                               .where(telemetry.c.device_id == f"{prefix}-0",
                                      telemetry.c.seq == 7)).one()
        assert json.loads(row[0])["prediction_id"] == row[1] == f"{prefix}-0-7"
    finally:
        db.dispose()
