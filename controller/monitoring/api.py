"""REST resources of monitoring: ``/alerts`` (firing now, their history, evaluate now),
``/retrain-runs`` and ``/metrics`` (aggregates of the devices' metrics windows per device, per
model version, per label group and fleet-wide).

Thin: each endpoint is one call into the alert store, the metrics store or the monitoring
service. Time ranges are ``since``/``until`` in Unix seconds and select the windows that overlap
them. Aggregates leave the merged summary out unless ``summary=true``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from controller.errors import ValidationError
from controller.monitoring import ALERT_KINDS, AlertEvent
from controller.monitoring.alert_marks import AlertMarks
from controller.monitoring.alert_store import AlertStore
from controller.monitoring.metrics_store import MetricsStore
from controller.monitoring.notify import parse_matcher
from controller.monitoring.retrain_runs import RetrainRuns
from controller.rest import API, MAX_ID, Actor

Since = Annotated[float | None, Query(description="windows ending after this Unix time")]
Until = Annotated[float | None, Query(description="windows starting before this Unix time")]
WithSummary = Annotated[bool, Query(description="include the merged additive summary")]


def _kind(kind: str | None) -> str | None:
    if kind is not None and kind not in ALERT_KINDS:
        raise ValidationError(f"alert kind {kind!r} is not one of {list(ALERT_KINDS)}")
    return kind


def _trim(aggregate: dict[str, Any], summary: bool) -> dict[str, Any]:
    return aggregate if summary else {k: v for k, v in aggregate.items() if k != "summary"}


class AckBody(BaseModel):
    comment: str = Field("", max_length=1000)


class SilenceBody(BaseModel):
    """Either ``event_id`` (silence the alert that event belongs to) or ``matchers``
    (``label=value``, ``label!=value``, ``label=~regex``, ``label!~regex``), for ``duration_s``."""

    event_id: int | None = Field(None, ge=1, le=MAX_ID)
    matchers: list[str] = Field(default_factory=list, max_length=20)
    duration_s: float = Field(7200.0, gt=0)
    comment: str = Field("", max_length=1000)


def alerts_router(alerts: AlertStore, evaluate_now: Callable[[], Awaitable[list[AlertEvent]]],
                  settings: Callable[[], dict[str, Any]],
                  require_admin: Callable[..., Any], marks: AlertMarks | None = None
                  ) -> APIRouter:
    router = APIRouter(tags=["alerts"])
    admin = [Depends(require_admin)]

    @router.get(f"{API}/alerts")
    def list_alerts(all: Annotated[bool, Query(description="cleared ones too")] = False,  # noqa: A002
                    kind: str | None = None, device_id: str | None = None) -> list[dict[str, Any]]:
        """Alerts firing now (with ``all``: every alert state, firing or not); each says who
        acknowledged its current firing (``acked_by``) and which silences match it
        (``silenced_by``)."""
        rows = alerts.alerts(include_cleared=all, kind=_kind(kind), device_id=device_id)
        return marks.annotate(rows, time.time()) if marks is not None else rows

    if marks is not None:
        @router.post(f"{API}/alerts/events/{{event_id}}/ack", dependencies=admin)
        def ack_alert(event_id: Annotated[int, Path(ge=1, le=MAX_ID)], actor: Actor,
                      body: AckBody | None = None) -> dict[str, Any]:
            """Acknowledge the firing that event ``event_id`` started (the ID column of
            `edgewise alerts`); a later firing of the same alert needs its own."""
            return marks.ack(event_id, actor, time.time(), body.comment if body else "")

        @router.post(f"{API}/alerts/silences", dependencies=admin)
        def create_silence(body: SilenceBody, actor: Actor) -> dict[str, Any]:
            """Stop notifying the alerts that match (they are still judged and listed)."""
            if (body.event_id is None) == (not body.matchers):
                raise ValidationError("give either an alert event id or matchers, not both "
                                      "and not neither")
            matchers = marks.matchers_for_event(body.event_id) if body.event_id is not None \
                else [parse_matcher(m) for m in body.matchers]
            return marks.silence(matchers, starts_at=time.time(), duration_s=body.duration_s,
                                 by=actor, comment=body.comment)

        @router.get(f"{API}/alerts/silences")
        def list_silences(all: Annotated[bool, Query(  # noqa: A002
                description="expired ones too")] = False) -> list[dict[str, Any]]:
            """Silences in force (with ``all``: expired ones too)."""
            return marks.silences(time.time(), include_expired=all)

        @router.delete(f"{API}/alerts/silences/{{silence_id}}", dependencies=admin)
        def expire_silence(silence_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> dict[str, Any]:
            """End a silence now."""
            return marks.expire(silence_id, time.time())

    @router.get(f"{API}/alerts/history")
    def alert_history(since: Since = None, limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
                      kind: str | None = None,
                      device_id: str | None = None) -> list[dict[str, Any]]:
        """Alert events (fired, cleared), newest first."""
        return alerts.history(since=since, limit=limit, kind=_kind(kind),
                                         device_id=device_id)

    @router.get(f"{API}/alerts/events/{{event_id}}")
    def explain_alert(event_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> dict[str, Any]:
        """One alert event explained: the test that fired (or cleared) it, its statistic against
        its threshold, its false-alarm rate and the evidence; the alert's state now; the
        detectors of that device or group; and the settings in force."""
        return {**alerts.explain(event_id), "settings": settings()}

    @router.post(f"{API}/alerts/evaluate", dependencies=admin)
    async def evaluate_alerts() -> dict[str, Any]:
        """Judge the windows received so far now, instead of at the next interval."""
        events = await evaluate_now()
        return {"events": [e.to_dict() for e in events]}

    return router


def retrain_runs_router(runs: RetrainRuns) -> APIRouter:
    router = APIRouter(tags=["retraining"])

    @router.get(f"{API}/retrain-runs")
    def list_retrain_runs(limit: Annotated[int, Query(ge=1, le=1000)] = 50
                          ) -> list[dict[str, Any]]:
        """Runs of the continuous-training hook, newest first."""
        return runs.runs(limit)

    return router


def metrics_router(metrics: MetricsStore) -> APIRouter:
    router = APIRouter(tags=["metrics"])

    @router.get(f"{API}/metrics/fleet")
    def fleet_metrics(since: Since = None, until: Until = None,
                      summary: WithSummary = False) -> list[dict[str, Any]]:
        """Every model version with windows in the range, aggregated over the fleet."""
        return [_trim(a, summary) for a in metrics.fleet_overview(since=since,
                                                                             until=until)]

    @router.get(f"{API}/metrics/devices/{{device_id}}")
    def device_metrics(device_id: str, since: Since = None, until: Until = None,
                       summary: WithSummary = False) -> list[dict[str, Any]]:
        """The device's aggregate per model version it ran in the range."""
        return [_trim(a, summary) for a in metrics.device_aggregate(
            device_id, since=since, until=until)]

    @router.get(f"{API}/metrics/devices/{{device_id}}/windows")
    def device_windows(device_id: str, since: Since = None, until: Until = None,
                       limit: Annotated[int, Query(ge=1, le=10_000)] = 100
                       ) -> list[dict[str, Any]]:
        """The device's windows, newest first, with their per-window figures."""
        return metrics.windows(device_id, since=since, until=until, limit=limit)

    @router.get(f"{API}/metrics/models/{{model}}/versions/{{version}}")
    def version_metrics(model: str, version: int, since: Since = None, until: Until = None,
                        selector: Annotated[str | None, Query(
                            description="device label selector, e.g. site=berlin")] = None,
                        per_device: bool = False,
                        summary: WithSummary = False) -> dict[str, Any]:
        """Fleet-wide (or selector-wide) aggregate of one model version."""
        return _trim(metrics.version_aggregate(
            model, version, since=since, until=until, selector=selector,
            per_device=per_device), summary)

    @router.get(f"{API}/metrics/models/{{model}}/versions/{{version}}/groups/{{label}}")
    def group_metrics(model: str, version: int, label: str, since: Since = None,
                      until: Until = None, summary: WithSummary = False) -> dict[str, Any]:
        """One aggregate per value of the device label ``label`` (e.g. ``site``)."""
        groups = metrics.group_aggregate(model, version, label, since=since,
                                                    until=until)
        return {value: _trim(agg, summary) for value, agg in groups.items()}

    return router
