"""Alerts out: to Prometheus Alertmanager's v2 API and to generic HMAC-signed webhooks.

Alert evaluation never waits for a receiver: :meth:`AlertNotifier.wake` only records the events
of an evaluation and sets a flag. The notifier's own task then reads the alert states (in a
worker thread), leaves out silenced alerts, builds the bodies (controller/monitoring/notify.py)
and puts them on one bounded queue per receiver; one sender task per receiver posts the head of
its queue and, when the receiver is down or answers an error, posts it again after a back-off
(1 s doubling to ``retry_max_s``) until it is delivered. A queue that is full drops its oldest
body (counted in ``dropped``, logged): for Alertmanager every body carries every firing alert,
so the next one repairs the loss.

Alertmanager forgets a firing alert after its ``resolve_timeout`` unless it is sent again, so
the firing alerts are re-sent every ``resend_s``; a cleared alert is sent once with ``endsAt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from controller.monitoring import FIRED, AlertEvent
from controller.monitoring.alert_marks import AlertMarks
from controller.monitoring.notify import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    alertmanager_alert,
    dumps,
    sign,
    webhook_body,
    webhook_event,
)

log = logging.getLogger("edgewise.controller.notify")

TARGETS = ("alertmanager", "webhook")


@dataclass(frozen=True)
class NotifySettings:
    alertmanager_url: str | None = None  # e.g. http://alertmanager:9093
    webhook_url: str | None = None
    webhook_secret: str | None = None
    queue_size: int = 1000
    resend_s: float = 60.0
    timeout_s: float = 5.0
    retry_max_s: float = 30.0
    generator_url: str | None = None  # a link back to the controller's dashboard

    @property
    def enabled(self) -> bool:
        return bool(self.alertmanager_url or self.webhook_url)


@dataclass
class _Outgoing:
    target: str
    url: str
    body: bytes
    headers: dict[str, str]
    attempts: int = 0


class AlertNotifier:
    def __init__(self, marks: AlertMarks, settings: NotifySettings,
                 clock: Callable[[], float] = time.time,
                 is_leader: Callable[[], bool] = lambda: True) -> None:
        self.marks = marks
        self._is_leader = is_leader
        self.settings = settings
        self._clock = clock
        self.stats: Counter[str] = Counter()
        self.queues: dict[str, deque[_Outgoing]] = {t: deque() for t in TARGETS}
        self._events: deque[AlertEvent] = deque()
        self._wake = asyncio.Event()
        self._ready: dict[str, asyncio.Event] = {t: asyncio.Event() for t in TARGETS}
        self._tasks: list[asyncio.Task[None]] = []
        self._cleared: dict[tuple[str, str], float] = {}  # cleared since the last body

    # -- the evaluation's side: never blocks ---------------------------------------------------

    def wake(self, events: list[AlertEvent]) -> None:
        """Record an evaluation's events; the notifier's task does the rest."""
        if not self.settings.enabled:
            return
        for event in events:
            if len(self._events) >= self.settings.queue_size:
                self._events.popleft()
                self.stats["events_dropped"] += 1
            self._events.append(event)
        if events:
            self._wake.set()

    # -- tasks ---------------------------------------------------------------------------------

    def start(self) -> None:
        if not self.settings.enabled:
            return
        self._tasks.append(asyncio.create_task(self._build_loop()))
        for target, url in (("alertmanager", self.settings.alertmanager_url),
                            ("webhook", self.settings.webhook_url)):
            if url:
                self._tasks.append(asyncio.create_task(self._send_loop(target)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def queued(self, target: str) -> int:
        return len(self.queues[target])

    def figures(self) -> tuple[dict[str, int], dict[str, int]]:
        """The counters and, per configured receiver, its queue length (for /metrics)."""
        configured = [t for t, url in (("alertmanager", self.settings.alertmanager_url),
                                       ("webhook", self.settings.webhook_url)) if url]
        return dict(self.stats), {t: len(self.queues[t]) for t in configured}

    async def _build_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.resend_s)
            self._wake.clear()
            events = list(self._events)
            self._events.clear()
            if not self._is_leader() and not events:  # the replica that judges re-sends
                continue
            try:
                await self.build(events)
            except Exception:  # the database may be down: the next pass re-sends the states
                self.stats["build_failures"] += 1
                log.exception("alert notification could not be built; next try in %.0f s",
                              self.settings.resend_s)

    async def build(self, events: list[AlertEvent]) -> None:
        """Turn the states (and ``events``) into bodies on the receivers' queues."""
        now = self._clock()
        states, groups = await asyncio.to_thread(self._read)
        for e in events:
            if e.event != FIRED:
                self._cleared[(e.kind.value, e.device_id)] = e.ts
        states = self.marks.annotate_with(states, groups, await asyncio.to_thread(
            self.marks.silences, now))
        by_key = {(s["kind"], s["device_id"]): s for s in states}
        if self.settings.alertmanager_url:
            alerts = []
            for s in states:
                if s["silenced_by"]:
                    continue
                key = (s["kind"], s["device_id"])
                if s["firing"]:
                    alerts.append(alertmanager_alert(
                        s, resolved_at=None, device_group=groups.get(s["device_id"]),
                        generator_url=self.settings.generator_url))
                elif key in self._cleared:
                    start = s.get("fired_at") or s.get("since") or self._cleared[key]
                    alerts.append(alertmanager_alert(
                        {**s, "since": min(float(start), self._cleared[key])},
                        resolved_at=self._cleared[key], device_group=groups.get(s["device_id"]),
                        generator_url=self.settings.generator_url))
            if alerts:
                self._put(_Outgoing("alertmanager",
                                    self.settings.alertmanager_url.rstrip("/") + "/api/v2/alerts",
                                    dumps(alerts), {"Content-Type": "application/json"}))
        self._cleared.clear()
        if self.settings.webhook_url and events:
            out = []
            for e in events:
                state = by_key.get((e.kind.value, e.device_id)) or {}
                if state.get("silenced_by"):
                    continue
                alert = {**state, "kind": e.kind.value, "device_id": e.device_id,
                         "model": e.model, "version": e.version, "detail": e.detail,
                         "value": e.value, "threshold": e.threshold}
                out.append(webhook_event(alert, "firing" if e.event == FIRED else "resolved",
                                         e.ts, groups.get(e.device_id)))
            if out:
                body = dumps(webhook_body(out, now))
                headers = {"Content-Type": "application/json"}
                if self.settings.webhook_secret:
                    stamp = str(int(now))
                    headers[TIMESTAMP_HEADER] = stamp
                    headers[SIGNATURE_HEADER] = sign(self.settings.webhook_secret, stamp, body)
                self._put(_Outgoing("webhook", self.settings.webhook_url, body, headers))

    def _read(self) -> tuple[list[dict[str, Any]], dict[str, str]]:
        return self.marks.firing_states(), self.marks.device_groups()

    def _put(self, item: _Outgoing) -> None:
        queue = self.queues[item.target]
        if len(queue) >= self.settings.queue_size:
            queue.popleft()
            self.stats[f"{item.target}_dropped"] += 1
            log.warning("%s notification queue full (%d): dropped the oldest body",
                        item.target, self.settings.queue_size)
        queue.append(item)
        self.stats[f"{item.target}_queued"] += 1
        self._ready[item.target].set()

    async def _send_loop(self, target: str) -> None:
        queue = self.queues[target]
        async with httpx.AsyncClient(timeout=self.settings.timeout_s) as client:
            while True:
                if not queue:
                    self._ready[target].clear()
                    await self._ready[target].wait()
                    continue
                item = queue[0]
                ok = await self._post(client, item)
                if ok:
                    if queue and queue[0] is item:
                        queue.popleft()
                    continue
                delay = min(self.settings.retry_max_s, 2.0 ** min(item.attempts - 1, 10))
                await asyncio.sleep(delay)

    async def _post(self, client: httpx.AsyncClient, item: _Outgoing) -> bool:
        item.attempts += 1
        try:
            response = await client.post(item.url, content=item.body, headers=item.headers)
        except httpx.HTTPError as exc:
            self.stats[f"{item.target}_failed_attempts"] += 1
            if item.attempts == 1 or item.attempts % 10 == 0:
                log.warning("%s at %s unreachable (attempt %d, retrying): %s", item.target,
                            item.url, item.attempts, exc)
            return False
        if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
            # refused as such: sending it again cannot help, and it would hold up the queue
            self.stats[f"{item.target}_rejected"] += 1
            log.error("%s at %s refused a notification (%d): %s", item.target, item.url,
                      response.status_code, response.text[:200])
            return True
        if response.status_code >= 300:
            self.stats[f"{item.target}_failed_attempts"] += 1
            if item.attempts == 1 or item.attempts % 10 == 0:
                log.warning("%s at %s answered %d (attempt %d, retrying): %s", item.target,
                            item.url, response.status_code, item.attempts,
                            response.text[:200])
            return False
        self.stats[f"{item.target}_sent"] += 1
        return True
