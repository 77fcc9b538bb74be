"""Alerts out, against real receivers: a real Prometheus Alertmanager gets a firing alert and then
its resolution (read back through its v2 API); a real HTTP server gets signed webhook bodies; an
unreachable Alertmanager leaves the bodies queued (bounded, overflow counted) and retried until
it comes up, while alert evaluation goes on undisturbed. Acknowledgements and silences are
stored, listed, and keep silenced alerts from being notified."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from controller.fleet.store import FleetStore
from controller.monitoring import AlertRules
from controller.monitoring.alert_marks import AlertMarks
from controller.monitoring.alert_store import AlertStore, DetectionSettings
from controller.monitoring.metrics_store import MetricsStore
from controller.monitoring.notifier import AlertNotifier, NotifySettings
from controller.monitoring.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, parse_matcher, verify
from controller.storage import migrator
from controller.storage.db import Database
from edgewise_wire import ModelRef, Reported
from simulator.broker import free_port
from tests.harness.prometheus_tools import Alertmanager
from tests.harness.waiting import wait_for_async

RULES = AlertRules(fire_after=1, clear_after=1, silent_after_s=60)
DETECTION = DetectionSettings(segment_label="")
SECRET = "s3cret"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(str(tmp_path / "edgewise.db"))
    migrator.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    am = Alertmanager(tmp_path / "alertmanager")
    am.start()
    yield am
    am.stop()


def _seen(db: Database, device: str, ts: float) -> None:
    FleetStore(db).set_reported(device, Reported(state="active",
                                                 active=ModelRef("iris", 3, "a" * 64), ts=ts))


def _ours(alerts: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"].get("device") == device]


class _Webhook(ThreadingHTTPServer):
    bodies: list[tuple[dict[str, str], bytes]]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 -- http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: Any = self.server
        server.bodies.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[_Webhook]:
    server = _Webhook(("127.0.0.1", 0), _Handler)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_alertmanager_gets_a_firing_then_resolved_alert_and_the_webhook_signed_bodies(
        db: Database, alertmanager: Alertmanager, webhook: _Webhook) -> None:
    alerts = AlertStore(db, MetricsStore(db))
    marks = AlertMarks(db)
    hook_url = f"http://127.0.0.1:{webhook.server_address[1]}/hook"

    async def main() -> None:
        notifier = AlertNotifier(marks, NotifySettings(
            alertmanager_url=alertmanager.url, webhook_url=hook_url, webhook_secret=SECRET,
            resend_s=0.5, retry_max_s=0.2))
        notifier.start()
        try:
            now = time.time()
            _seen(db, "pi-7", now - 600)
            events = alerts.evaluate(now, RULES, DETECTION)
            assert [(e.kind.value, e.event) for e in events] == [("silent", "fired")]
            notifier.wake(events)
            firing = await wait_for_async(
                lambda: _ours(alertmanager.alerts(active="true"), "pi-7"), 20.0,
                "the firing alert in Alertmanager", in_thread=True)
            [alert] = firing
            assert alert["labels"] == {"alertname": "EdgewiseSilent", "device": "pi-7",
                                       "model": "iris", "version": "3", "severity": "critical"}
            assert alert["status"]["state"] == "active"
            event_id = alerts.history()[0]["id"]
            assert alert["annotations"]["event_id"] == str(event_id)
            assert alert["annotations"]["explain"] == f"edgewise alerts --explain {event_id}"
            assert "silent" in alert["annotations"]["summary"]
            # the device is back: the alert clears, Alertmanager resolves it
            _seen(db, "pi-7", time.time())
            cleared = alerts.evaluate(time.time(), RULES, DETECTION)
            assert [(e.kind.value, e.event) for e in cleared] == [("silent", "cleared")]
            notifier.wake(cleared)
            await wait_for_async(lambda: not _ours(alertmanager.alerts(active="true"), "pi-7"),
                                 20.0, "Alertmanager to resolve the alert", in_thread=True)
            await wait_for_async(lambda: len(webhook.bodies) >= 2, 20.0, "two webhook bodies")
        finally:
            await notifier.stop()
        statuses = []
        for headers, body in webhook.bodies:
            assert verify(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
            assert not verify("wrong", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
            doc = json.loads(body)
            statuses += [(a["status"], a["labels"]["device"]) for a in doc["alerts"]]
        assert statuses == [("firing", "pi-7"), ("resolved", "pi-7")]
        assert notifier.stats["alertmanager_sent"] >= 2 and notifier.stats["webhook_sent"] == 2

    asyncio.run(main())


def test_an_unreachable_alertmanager_queues_and_retries_without_holding_up_evaluation(
        db: Database, tmp_path: Path) -> None:
    alerts = AlertStore(db, MetricsStore(db))
    marks = AlertMarks(db)
    port = free_port()
    late = Alertmanager(tmp_path / "late", port=port)

    async def main() -> None:
        notifier = AlertNotifier(marks, NotifySettings(
            alertmanager_url=late.url, queue_size=3, resend_s=3600.0, retry_max_s=0.2))
        notifier.start()
        try:
            now = time.time()
            for i in range(6):
                _seen(db, f"pi-{i}", now - 600)
                events = alerts.evaluate(time.time(), RULES, DETECTION)
                notifier.wake(events)  # returns at once: nothing waits for the receiver
                assert [e.device_id for e in events] == [f"pi-{i}"]
                await wait_for_async(lambda n=i + 1: notifier.stats["alertmanager_queued"] >= n,
                                     20.0, f"body {i + 1} queued")
            await wait_for_async(lambda: notifier.stats["alertmanager_failed_attempts"] >= 3,
                                 20.0, "retries against the unreachable Alertmanager")
            assert notifier.queued("alertmanager") <= 3
            assert notifier.stats["alertmanager_dropped"] >= 1  # bounded: overflow counted
            assert notifier.stats["alertmanager_sent"] == 0
            await asyncio.to_thread(late.start)
            # the queued bodies go out once it is up; the newest carries every firing alert
            found = await wait_for_async(
                lambda: {a["labels"]["device"] for a in late.alerts(active="true")}
                >= {f"pi-{i}" for i in range(6)}, 30.0,
                "every firing alert delivered after the retries", in_thread=True)
            assert found
            await wait_for_async(lambda: notifier.queued("alertmanager") == 0, 20.0,
                                 "the queue drained")
        finally:
            await notifier.stop()
            late.stop()

    asyncio.run(main())


def test_acks_and_silences_are_listed_and_silenced_alerts_are_not_notified(
        db: Database, webhook: _Webhook) -> None:
    alerts = AlertStore(db, MetricsStore(db))
    marks = AlertMarks(db)
    now = time.time()
    for device in ("pi-a", "pi-b"):
        _seen(db, device, now - 600)
    events = alerts.evaluate(now, RULES, DETECTION)
    ids = {e.device_id: row["id"] for e in events
           for row in alerts.history() if row["device_id"] == e.device_id}
    ack = marks.ack(ids["pi-a"], "ops@host", now, "on it")
    assert ack["acked_by"] == "ops@host"
    silence = marks.silence(marks.matchers_for_event(ids["pi-b"]), starts_at=now,
                            duration_s=7200, by="ops@host")
    listed = {a["device_id"]: a for a in marks.annotate(alerts.alerts(), now)}
    assert listed["pi-a"]["acked_by"] == "ops@host" and listed["pi-a"]["silenced_by"] == []
    assert listed["pi-b"]["acked_by"] is None and listed["pi-b"]["silenced_by"] == [silence["id"]]
    assert silence["text"] == "kind=silent, device=pi-b"
    by_matcher = marks.silence([parse_matcher("model=iris"), parse_matcher("severity=~crit.*")],
                               starts_at=now, duration_s=60, by="ops@host")
    listed = {a["device_id"]: a for a in marks.annotate(alerts.alerts(), now)}
    assert listed["pi-a"]["silenced_by"] == [by_matcher["id"]]
    marks.expire(by_matcher["id"], now)
    assert [s["id"] for s in marks.silences(now + 1)] == [silence["id"]]

    async def main() -> None:
        notifier = AlertNotifier(marks, NotifySettings(
            webhook_url=f"http://127.0.0.1:{webhook.server_address[1]}/", resend_s=3600.0))
        notifier.start()
        try:
            notifier.wake(events)
            await wait_for_async(lambda: webhook.bodies, 20.0, "the webhook body")
        finally:
            await notifier.stop()
        [(_, body)] = webhook.bodies
        sent = json.loads(body)["alerts"]
        assert [a["labels"]["device"] for a in sent] == ["pi-a"]  # pi-b is silenced
        assert sent[0]["annotations"]["acknowledged_by"] == "ops@host"

    asyncio.run(main())


def test_the_controllers_evaluation_goes_on_while_alertmanager_is_down(tmp_path: Path) -> None:
    """Through the controller as composed: evaluate_now returns its events while every body for
    the unreachable Alertmanager waits on the notifier's queue and is retried."""
    from tests.harness.web_fleet import make_controller

    c = make_controller(tmp_path / "c", alertmanager_url=f"http://127.0.0.1:{free_port()}",
                        alert_resend_s=3600.0)

    async def main() -> None:
        c.notifier.settings = dataclasses.replace(c.notifier.settings, retry_max_s=0.2)
        c.notifier.start()
        try:
            now = time.time()
            for i in range(3):
                _seen(c.db, f"pi-{i}", now - 3600)
                events = await c.monitoring.evaluate_now()
                assert [(e.device_id, e.event) for e in events] == [(f"pi-{i}", "fired")]
            assert c.monitoring.stats["evaluations"] == 3
            await wait_for_async(lambda: c.notifier.stats["alertmanager_failed_attempts"] >= 2,
                                 20.0, "retries against the unreachable Alertmanager")
            assert c.notifier.stats["alertmanager_sent"] == 0
            assert 1 <= c.notifier.queued("alertmanager") <= 3
            counts, queues = c.notifier.figures()
            assert queues == {"alertmanager": c.notifier.queued("alertmanager")}
        finally:
            await c.notifier.stop()

    try:
        asyncio.run(main())
    finally:
        c.db.dispose()
