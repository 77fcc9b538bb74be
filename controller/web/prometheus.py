"""``GET /metrics``: fleet health in the Prometheus text format (prometheus-client).

Computed from the stores at scrape time by a collector registered on a registry of this app's
own (never the process-wide default, so two apps in one process do not collide). ``group`` is
the value of one device label, ``site`` unless the scrape asks ``/metrics?group_by=hw``.

- from the devices table: ``edgewise_devices``, ``edgewise_devices_running``,
  ``edgewise_devices_failed``;
- from telemetry, all time (counters): ``edgewise_predictions_total``,
  ``edgewise_labelled_predictions_total``, ``edgewise_correct_predictions_total``,
  ``edgewise_prediction_errors_total``; over the last ``window`` seconds (gauges):
  ``edgewise_accuracy``, ``edgewise_latency_mean_seconds``;
- from the agents' metrics windows (merged per group and version by the metrics store):
  ``edgewise_latency_p95_seconds``, ``edgewise_drift_psi``, ``edgewise_drifted_features``; per
  feature, summed over the whole fleet (the drift views): ``edgewise_feature_drift_psi``;
- from the alert store: ``edgewise_alerts_firing``;
- from the MQTT bridge: ``edgewise_bridge_events_total``;
- from the alert notifier (Alertmanager, webhooks): ``edgewise_alert_notifications_total`` by
  receiver and outcome (sent, failed attempts, dropped from a full queue, rejected) and
  ``edgewise_alert_notification_queue_length``;
- from the devices' health windows (the newest window of each device that sent one in the last
  ``window`` seconds), per group, never per device: ``edgewise_health_devices``,
  ``edgewise_health_rss_bytes``, ``edgewise_health_cpu_percent``,
  ``edgewise_health_temperature_celsius``, ``edgewise_health_disk_free_ratio``,
  ``edgewise_health_memory_available_bytes`` (each with ``stat`` min, mean or max), and
  ``edgewise_health_alerts_firing`` by kind.

A figure that was not measured is left out, never reported as 0. Names follow Prometheus'
conventions: base units in the name (seconds, bytes), ``_total`` on counters, and labels bounded
by the fleet's groups and model versions, never one series per device.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from controller.device_health.views import DeviceHealthViews
from controller.monitoring.sequential_alerts import is_group
from controller.web.health import DEFAULT_GROUP_LABEL, FleetHealth, by_group_and_version
from controller.web.rollup import DeviceFacts, Sums

try:  # an optional dependency of the controller: without it /metrics says what to install
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
except ImportError:  # pragma: no cover - exercised only on an incomplete install
    CounterMetricFamily = GaugeMetricFamily = None  # type: ignore[assignment,misc]

log = logging.getLogger("edgewise.controller.metrics")

GROUP = "group"
VERSION_LABELS = [GROUP, "model", "version"]
# (model, version, now, span) -> each histogram's fleet-wide drift over the last span seconds
# (controller/monitoring/drift_views.py: DriftViews.latest)
FeatureDrift = Callable[[str, int, float, float], list[dict[str, Any]]]
# the alert notifier's counters ("alertmanager_sent", ...) and its queue lengths by receiver
NotifyStats = Callable[[], tuple[Mapping[str, int], Mapping[str, int]]]
NOTIFY_OUTCOMES = ("sent", "failed_attempts", "dropped", "rejected")


class FleetCollector:
    """A prometheus-client collector over :class:`FleetHealth` (and the metrics store)."""

    def __init__(self, health: FleetHealth, metrics_store: Any | None,
                 bridge_stats: Callable[[], Mapping[str, int]], group_by: str,
                 window: float, feature_drift: FeatureDrift | None = None,
                 device_health: DeviceHealthViews | None = None,
                 notify_stats: NotifyStats | None = None) -> None:
        self.health = health
        self.notify_stats = notify_stats
        self.device_health = device_health
        self.metrics_store = metrics_store
        self.bridge_stats = bridge_stats
        self.group_by = group_by
        self.window = window
        self.feature_drift = feature_drift

    def collect(self) -> Iterator[Any]:
        now = time.time()
        facts = self.health.device_facts()
        group_of = {f.device_id: f.labels.get(self.group_by, "") for f in facts}
        yield from self._devices(facts, group_of)
        yield from self._telemetry(facts, group_of, now)
        in_use = sorted({(f.model, f.version) for f in facts
                         if f.model is not None and f.version is not None})
        yield from self._window_figures(now, in_use)
        yield from self._feature_drift(now, in_use)
        yield from self._alerts(group_of)
        yield from self._device_health(group_of, now)
        bridge = CounterMetricFamily("edgewise_bridge_events", "MQTT bridge events: records "
                                     "stored, duplicates, messages dropped by reason, "
                                     "telemetry shed (unacknowledged) while storage is behind.",
                                     labels=["event"])
        for event, n in sorted(self.bridge_stats().items()):
            bridge.add_metric([event], n)
        yield bridge
        yield from self._notifications()

    def _notifications(self) -> Iterator[Any]:
        if self.notify_stats is None:
            return
        counts, queues = self.notify_stats()
        sent = CounterMetricFamily("edgewise_alert_notifications", "Alert notification bodies "
                                   "by receiver and outcome: sent, failed_attempts (retried), "
                                   "dropped (queue full), rejected (4xx).",
                                   labels=["receiver", "outcome"])
        queue = GaugeMetricFamily("edgewise_alert_notification_queue_length", "Bodies waiting "
                                  "for their receiver.", labels=["receiver"])
        for receiver in sorted(queues):
            for outcome in NOTIFY_OUTCOMES:
                sent.add_metric([receiver, outcome], counts.get(f"{receiver}_{outcome}", 0))
            queue.add_metric([receiver], queues[receiver])
        yield sent
        yield queue

    def _devices(self, facts: list[DeviceFacts], group_of: dict[str, str]) -> Iterator[Any]:
        devices = GaugeMetricFamily("edgewise_devices", "Devices the controller knows, by "
                                    "label group and presence.", labels=[GROUP, "online"])
        running = GaugeMetricFamily("edgewise_devices_running", "Devices whose active model is "
                                    "this version.", labels=VERSION_LABELS)
        failed = GaugeMetricFamily("edgewise_devices_failed", "Devices whose last update "
                                   "failed.", labels=[GROUP])
        presence: dict[tuple[str, str], int] = defaultdict(int)
        runs: dict[tuple[str, str, str], int] = defaultdict(int)
        fails: dict[str, int] = defaultdict(int)
        for f in facts:
            group = group_of[f.device_id]
            presence[(group, "true" if f.online else "false")] += 1
            if f.model is not None:
                runs[(group, f.model, str(f.version))] += 1
            fails[group] += int(f.update_failed)
        for pkey, n in sorted(presence.items()):
            devices.add_metric(list(pkey), n)
        for rkey, n in sorted(runs.items()):
            running.add_metric(list(rkey), n)
        for group, n in sorted(fails.items()):
            failed.add_metric([group], n)
        yield from (devices, running, failed)

    def _telemetry(self, facts: list[DeviceFacts], group_of: dict[str, str],
                   now: float) -> Iterator[Any]:
        by = ("device_id", "model", "version")
        all_time = by_group_and_version(facts, self.group_by, self.health.window_sums(None, by=by))
        windowed = by_group_and_version(facts, self.group_by,
                                        self.health.window_sums(now - self.window, by=by))
        predictions = CounterMetricFamily("edgewise_predictions", "Prediction records stored.",
                                          labels=VERSION_LABELS)
        labelled = CounterMetricFamily("edgewise_labelled_predictions", "Predictions whose true "
                                       "label came back.", labels=VERSION_LABELS)
        correct = CounterMetricFamily("edgewise_correct_predictions", "Labelled predictions "
                                      "that were right.", labels=VERSION_LABELS)
        for key, parts in sorted(all_time.items()):
            s = _total(parts)
            labels = [key[0], key[1], str(key[2])]
            predictions.add_metric(labels, s.predictions)
            labelled.add_metric(labels, s.labelled)
            correct.add_metric(labels, s.hits)
        yield from (predictions, labelled, correct)

        errors = CounterMetricFamily("edgewise_prediction_errors", "Inference error records "
                                     "stored (invalid input, runtime errors).", labels=[GROUP])
        per_group: dict[str, int] = defaultdict(int)
        for (device_id,), s in self.health.window_sums(None).items():
            if device_id in group_of:
                per_group[group_of[device_id]] += s.errors
        for group, n in sorted(per_group.items()):
            errors.add_metric([group], n)
        yield errors

        accuracy = GaugeMetricFamily("edgewise_accuracy", f"Accuracy on the predictions labelled "
                                     f"in the last {self.window:.0f} s.", labels=VERSION_LABELS)
        latency = GaugeMetricFamily("edgewise_latency_mean_seconds", f"Mean inference latency "
                                    f"in the last {self.window:.0f} s.", labels=VERSION_LABELS)
        for key, parts in sorted(windowed.items()):
            s = _total(parts)
            labels = [key[0], key[1], str(key[2])]
            if s.accuracy is not None:
                accuracy.add_metric(labels, s.accuracy)
            if s.mean_latency_ms is not None:
                latency.add_metric(labels, s.mean_latency_ms / 1000.0)
        yield from (accuracy, latency)

    def _alerts(self, group_of: dict[str, str]) -> Iterator[Any]:
        alerts = self.health.firing_alerts()
        if not alerts["available"]:
            return
        firing = GaugeMetricFamily("edgewise_alerts_firing", "Alerts firing now, by kind, "
                                   "label group and scope (a device, or a group's pooled test).",
                                   labels=["kind", GROUP, "scope"])
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        for a in alerts["firing"]:
            key = str(a.get("device_id"))
            if is_group(key):  # group:site=berlin: the group is in the key
                counts[(str(a.get("kind", "")), key.partition("=")[2], "group")] += 1
            else:
                counts[(str(a.get("kind", "")), group_of.get(key, ""), "device")] += 1
        for labels, n in sorted(counts.items()):
            firing.add_metric(list(labels), n)
        yield firing

    def _device_health(self, group_of: dict[str, str], now: float) -> Iterator[Any]:
        """Each group's devices' newest health windows, summarised (min, mean, max)."""
        if self.device_health is None:
            return
        latest = self.device_health.latest()
        values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        reporting: dict[str, int] = defaultdict(int)
        for device_id, w in latest.items():
            if w["window_end"] < now - self.window or device_id not in group_of:
                continue
            group = group_of[device_id]
            reporting[group] += 1
            free, total = w.get("disk_free_bytes"), w.get("disk_total_bytes")
            for name, value in (("rss", w.get("rss_bytes")), ("cpu", w.get("cpu_percent")),
                                ("temp", w.get("temp_c")),
                                ("mem", w.get("mem_available_bytes")),
                                ("disk", free / total if free is not None and total else None)):
                if value is not None:
                    values[group][name].append(float(value))
        devices = GaugeMetricFamily("edgewise_health_devices", "Devices that sent a health "
                                    "window in the last window seconds.", labels=[GROUP])
        for group, n in sorted(reporting.items()):
            devices.add_metric([group], n)
        yield devices
        for name, metric, text in (
                ("rss", "edgewise_health_rss_bytes", "Agent resident memory"),
                ("cpu", "edgewise_health_cpu_percent", "Agent CPU, percent of one core"),
                ("temp", "edgewise_health_temperature_celsius", "Hottest thermal zone"),
                ("mem", "edgewise_health_memory_available_bytes", "System memory available"),
                ("disk", "edgewise_health_disk_free_ratio", "Free share of the data disk")):
            family = GaugeMetricFamily(metric, f"{text} over the group's devices (their "
                                       "newest health window).", labels=[GROUP, "stat"])
            for group in sorted(values):
                v = values[group].get(name)
                if v:
                    for stat, x in (("min", min(v)), ("mean", sum(v) / len(v)),
                                    ("max", max(v))):
                        family.add_metric([group, stat], x)
            yield family
        firing = GaugeMetricFamily("edgewise_health_alerts_firing", "Device health alerts "
                                   "firing now, by kind and label group.", labels=["kind", GROUP])
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for a in self.device_health.alerts():
            counts[(a.kind, group_of.get(a.device_id, ""))] += 1
        for key, n in sorted(counts.items()):
            firing.add_metric(list(key), n)
        yield firing

    def _window_figures(self, now: float, versions: list[tuple[str, int]]) -> Iterator[Any]:
        """p95 latency and drift per group and version, merged from the metrics windows."""
        if self.metrics_store is None:
            return
        p95 = GaugeMetricFamily("edgewise_latency_p95_seconds", "95th percentile inference latency "
                                "from the agents' metrics windows.", labels=VERSION_LABELS)
        drift = GaugeMetricFamily("edgewise_drift_psi", "Worst PSI (features and prediction) "
                                  "of the merged metrics windows.", labels=VERSION_LABELS)
        drifted = GaugeMetricFamily("edgewise_drifted_features", "Features judged drifted in "
                                    "the merged metrics windows.", labels=VERSION_LABELS)
        for model, version in versions:
            try:
                groups = self.metrics_store.group_aggregate(model, version, self.group_by,
                                                            since=now - self.window)
            except Exception:  # one version's bad summaries must not take /metrics down
                log.exception("metrics windows of %s:%s could not be aggregated", model, version)
                continue
            for value, agg in groups.items():
                figures = agg.get("figures") or {}
                labels = [value, model, str(version)]
                latency = figures.get("latency_ms") or {}
                if latency.get("p95") is not None:
                    p95.add_metric(labels, latency["p95"] / 1000.0)
                if figures.get("drift_psi") is not None:
                    drift.add_metric(labels, figures["drift_psi"])
                if figures.get("drifted_features") is not None:
                    drifted.add_metric(labels, len(figures["drifted_features"]))
        yield p95
        yield drift
        yield drifted

    def _feature_drift(self, now: float, versions: list[tuple[str, int]]) -> Iterator[Any]:
        """PSI per feature (and of the prediction) of each version in use, its devices'
        histograms added up over the window: which feature drifts, bounded by the versions'
        features rather than the fleet's size (no group or device label)."""
        if self.feature_drift is None:
            return
        gauge = GaugeMetricFamily(
            "edgewise_feature_drift_psi", f"PSI of a feature's histogram (\"(prediction)\": the "
            f"model output's) added up over the fleet's metrics windows of the last "
            f"{self.window:.0f} s, against the reference profile.",
            labels=["model", "version", "feature"])
        for model, version in versions:
            try:
                figures = self.feature_drift(model, version, now, self.window)
            except Exception:  # one version's bad windows must not take /metrics down
                log.exception("feature drift of %s:%s could not be computed", model, version)
                continue
            for f in figures:
                if f["psi"] is not None:  # too few rows: no figure, never 0
                    gauge.add_metric([model, str(version), f["name"]], f["psi"])
        yield gauge


def _total(parts: list[Sums]) -> Sums:
    total = Sums()
    for s in parts:
        total.add(s)
    return total


def metrics_router(health: FleetHealth, metrics_store: Any | None,
                   bridge_stats: Callable[[], Mapping[str, int]],
                   feature_drift: FeatureDrift | None = None,
                   device_health: DeviceHealthViews | None = None,
                   notify_stats: NotifyStats | None = None) -> APIRouter:
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics", response_class=Response, responses={200: {
        "content": {"text/plain": {}}, "description": "Prometheus text exposition format"}})
    async def metrics(
        group_by: Annotated[str, Query(min_length=1, max_length=63,
                                       pattern=r"^[A-Za-z0-9_./-]+$")] = DEFAULT_GROUP_LABEL,
        window: Annotated[float, Query(ge=60, le=86400)] = 300,
    ) -> Response:
        """Fleet health for Prometheus: devices, versions, predictions, accuracy, latency,
        drift and alerts per label group and model version."""
        try:
            from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        except ImportError:
            raise HTTPException(503, "prometheus-client is not installed on this controller: "
                                     "pip install '.[controller]' in your Edgewise checkout") from None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(FleetCollector(health, metrics_store, bridge_stats, group_by, window,
                                         feature_drift, device_health, notify_stats))
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router
