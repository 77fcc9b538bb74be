"""Fleet health over time: windowed telemetry figures and drift per device, label group, model
version and fleet, for the dashboard, the CLI views and ``/metrics``.

Counts, latency and accuracy come from the telemetry table (every prediction and label the
agents sent). Drift and p95 latency come from the metrics windows the agents send
(``controller/monitoring/metrics_store.py``): one PSI per window is a device-side computation against the
model's reference profile, which raw telemetry cannot give. Where no window arrived yet, drift
is ``None`` ("not measured"), never zero.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from controller.errors import NotFoundError
from controller.fleet.prediction_sums import latency_count, latency_sum, predictions_count
from controller.fleet.queries import IN_CHUNK, load_labels, operator_labels
from controller.fleet.selectors import DEFAULT_GROUP_LABEL
from controller.models.registry import ModelRegistry
from controller.monitoring.figures import figures as summary_figures
from controller.storage.db import Database
from controller.storage.tables import devices, telemetry
from controller.storage.tables import metrics as metric_windows
from controller.web.rollup import (
    BucketPlan,
    DeviceFacts,
    Sums,
    fill_series,
    label_keys,
    plan_buckets,
    rollup_groups,
    sums_from_row,
)
from edgewise_monitoring import IncompatibleAggregates, MonitoringError, merge_summaries

log = logging.getLogger("edgewise.controller.web")

DRIFT_SPAN_S = 600.0  # merged drift figures cover at most the last 10 minutes
DRIFT_CACHE_S = 15.0
AlertsSource = Callable[[], list[dict[str, Any]] | None]  # firing alerts; None: not available


def _sums_columns() -> list[Any]:
    t = telemetry.c
    return [
        predictions_count().label("predictions"),
        latency_sum().label("latency_sum"),
        latency_count().label("latency_n"),
        sa.func.max(t.latency_ms).label("latency_max"),
        sa.func.count(t.correct).label("labelled"),
        sa.func.sum(sa.case((t.correct == sa.true(), 1), else_=0)).label("hits"),
        sa.func.count(sa.case((t.kind == "error", 1))).label("errors"),
    ]


def _bucket_index(db: Database, column: Any, plan: BucketPlan) -> Any:
    """The bucket number of ``column`` (a timestamp >= plan.start) as an SQL integer."""
    offset = (column - sa.literal(plan.start, sa.Float)) / sa.literal(plan.size, sa.Float)
    if db.dialect_name == "postgresql":
        offset = sa.func.floor(offset)
    return sa.cast(offset, sa.Integer)  # SQLite truncates, i.e. floors a non-negative number


class FleetHealth:
    def __init__(self, db: Database, registry: ModelRegistry,
                 alerts: AlertsSource | None = None, metrics_store: Any | None = None) -> None:
        self.db = db
        self.registry = registry
        self.alerts = alerts
        # controller/monitoring/metrics_store.py: reference profiles, to merge windows into one bucket
        self.metrics_store = metrics_store
        self._drift_cache: dict[tuple[Any, ...], tuple[float, dict[str, float]]] = {}
        self._cache_lock = threading.Lock()

    # -- building blocks -------------------------------------------------------------------------

    def device_facts(self) -> list[DeviceFacts]:
        """Every device with its effective labels (operator labels over its own)."""
        d = devices.c
        with self.db.read() as conn:
            rows = conn.execute(sa.select(d.device_id, d.labels_json, d.online, d.state,
                                          d.active_model, d.active_version, d.desired_model,
                                          d.desired_version)
                                .order_by(d.device_id)).all()
            overrides = operator_labels(conn, None)
        return [DeviceFacts(r.device_id, {**load_labels(r.labels_json),
                                          **overrides.get(r.device_id, {})},
                            bool(r.online), r.state, r.active_model, r.active_version,
                            r.desired_model, r.desired_version)
                for r in rows]

    def window_sums(self, since: float | None, until: float | None = None,
                    by: Sequence[str] = ("device_id",), device_ids: Sequence[str] | None = None,
                    model: str | None = None, version: int | None = None
                    ) -> dict[tuple[Any, ...], Sums]:
        """Telemetry figures grouped by the telemetry columns ``by``, over ``[since, until)``."""
        t = telemetry.c
        keys = [t[c] for c in by]
        q = sa.select(*keys, *_sums_columns()).group_by(*keys)
        if since is not None:
            q = q.where(t.ts >= since)
        if until is not None:
            q = q.where(t.ts < until)
        if model is not None:
            q = q.where(t.model == model)
        if version is not None:
            q = q.where(t.version == version)
        out: dict[tuple[Any, ...], Sums] = {}
        with self.db.read() as conn:
            queries = [q] if device_ids is None else [
                q.where(t.device_id.in_(list(device_ids[i:i + IN_CHUNK])))
                for i in range(0, len(device_ids), IN_CHUNK)]
            for query in queries:
                for r in conn.execute(query):
                    out[tuple(r[: len(by)])] = sums_from_row(r._mapping)
        return out

    def latest_windows(self, since: float) -> tuple[set[str], bool]:
        """The devices whose latest metrics window (ending after ``since``) was judged
        drifted, and whether any device sent a window in that time at all."""
        m = metric_windows.c
        last = (sa.select(m.device_id, sa.func.max(m.window_end).label("last"))
                .where(m.window_end > since).group_by(m.device_id).subquery())
        q = (sa.select(m.device_id, m.drifted)
             .join(last, sa.and_(m.device_id == last.c.device_id, m.window_end == last.c.last)))
        drifted: set[str] = set()
        seen = False
        with self.db.read() as conn:
            for r in conn.execute(q):
                seen = True
                if r.drifted:
                    drifted.add(r.device_id)
        return drifted, seen

    def merged_drift(self, now: float, window: float, label: str | None,
                     versions: Sequence[tuple[str, int]]) -> dict[str, float]:
        """Worst merged PSI per value of ``label`` (or per ``model:version`` when ``label`` is
        None) over the last ``min(window, DRIFT_SPAN_S)`` seconds, from the metrics store.

        Merging adds the windows' histograms and judges them against the reference profile,
        so a group's figure is the group's distribution, not the worst of its devices' noisy
        windows. Cached for :data:`DRIFT_CACHE_S`: every open dashboard polls it.
        """
        if self.metrics_store is None or not versions:
            return {}
        span = min(window, DRIFT_SPAN_S)
        key = (label, span, tuple(versions))
        with self._cache_lock:
            hit = self._drift_cache.get(key)
            if hit is not None and now - hit[0] < DRIFT_CACHE_S:
                return hit[1]
        out: dict[str, float] = {}
        for model, version in versions:
            try:
                if label is None:
                    aggs = {f"{model}:{version}": self.metrics_store.version_aggregate(
                        model, version, since=now - span)}
                else:
                    aggs = self.metrics_store.group_aggregate(model, version, label,
                                                              since=now - span)
            except Exception:  # one version's bad summaries must not take the view down
                log.exception("metrics windows of %s:%s could not be merged", model, version)
                continue
            for value, agg in aggs.items():
                psi = (agg.get("figures") or {}).get("drift_psi")
                if psi is not None:
                    out[value] = max(float(psi), out.get(value, float(psi)))
        with self._cache_lock:
            if len(self._drift_cache) > 64:
                self._drift_cache.clear()
            self._drift_cache[key] = (now, out)
        return out

    def firing_alerts(self) -> dict[str, Any]:
        items = self.alerts() if self.alerts is not None else None
        if items is None:
            return {"available": False, "count": 0, "firing": []}
        return {"available": True, "count": len(items), "firing": items}

    # -- views -----------------------------------------------------------------------------------

    def overview(self, now: float, window: float, group_by: str = DEFAULT_GROUP_LABEL
                 ) -> dict[str, Any]:
        """Counts, versions in use, health per label group, alerts; figures over ``window``."""
        facts = self.device_facts()
        since = now - window
        sums = {k[0]: v for k, v in self.window_sums(since).items()}
        drifting, seen = self.latest_windows(since)
        in_use = sorted({(f.model, f.version) for f in facts
                         if f.model is not None and f.version is not None})
        drift = self.merged_drift(now, window, group_by, in_use) if seen else {}
        states: dict[str, int] = defaultdict(int)
        versions: dict[tuple[str, int], dict[str, Any]] = {}
        for f in facts:
            states[f.state or "unknown"] += 1
            if f.model is not None and f.version is not None:
                v = versions.setdefault((f.model, f.version), {
                    "model": f.model, "version": f.version, "devices": 0, "online": 0})
                v["devices"] += 1
                v["online"] += int(f.online)
        fleet = Sums()
        for s in sums.values():
            fleet.add(s)
        online = sum(f.online for f in facts)
        return {
            "generated_at": now, "window_s": window, "group_by": group_by,
            "devices": len(facts), "online": online, "offline": len(facts) - online,
            "states": dict(sorted(states.items())),
            "versions": [versions[k] for k in sorted(versions)],
            "figures": {**fleet.figures(), "drift_psi": max(drift.values(), default=None),
                        "drifting": len(drifting) if seen else None,
                        "drift_span_s": min(window, DRIFT_SPAN_S)},
            "drift_available": seen,
            "groups": rollup_groups(facts, group_by, sums, drift if seen else None, drifting),
            "label_keys": label_keys(f.labels for f in facts),
            "alerts": self.firing_alerts(),
        }

    def device_series(self, device_id: str, now: float, window: float,
                      buckets: int) -> dict[str, Any]:
        """The device's figures per time bucket; drift and p95 from its metrics windows."""
        with self.db.read() as conn:
            if conn.execute(sa.select(devices.c.device_id)
                            .where(devices.c.device_id == device_id)).first() is None:
                raise NotFoundError("device", device_id)
        return self._series(now, window, buckets, device_id=device_id)

    def fleet_series(self, now: float, window: float, buckets: int, model: str | None = None,
                     version: int | None = None) -> dict[str, Any]:
        return self._series(now, window, buckets, model=model, version=version)

    def _series(self, now: float, window: float, buckets: int, device_id: str | None = None,
                model: str | None = None, version: int | None = None) -> dict[str, Any]:
        plan = plan_buckets(now, window, buckets)
        t, m = telemetry.c, metric_windows.c
        bucket = _bucket_index(self.db, t.ts, plan).label("bucket")
        q = (sa.select(bucket, *_sums_columns())
             .where(t.ts >= plan.start, t.ts < plan.end).group_by(bucket))
        wb = _bucket_index(self.db, m.window_end, plan).label("bucket")
        wq = (sa.select(wb, sa.func.max(m.drift_psi).label("psi"),
                        sa.func.max(m.p95_latency_ms).label("p95"), sa.func.count().label("n"))
              .where(m.window_end >= plan.start, m.window_end < plan.end).group_by(wb))
        if device_id is not None:
            q = q.where(t.device_id == device_id)
        if model is not None:
            q, wq = q.where(t.model == model), wq.where(m.model == model)
        if version is not None:
            q, wq = q.where(t.version == version), wq.where(m.version == version)
        rows: dict[int, Sums] = {}
        drift: dict[int, float] = {}
        p95: dict[int, float] = {}
        windows = 0
        with self.db.read() as conn:
            for r in conn.execute(q):
                rows[int(r.bucket)] = sums_from_row(r._mapping)
            if device_id is None:  # the fleet: the worst window per bucket, without merging
                for r in conn.execute(wq):
                    windows += int(r.n)
                    if r.psi is not None:
                        drift[int(r.bucket)] = float(r.psi)
                    if r.p95 is not None:
                        p95[int(r.bucket)] = float(r.p95)
        if device_id is not None:
            windows = self._merged_buckets(device_id, plan, drift, p95)
        return {"start": plan.start, "end": plan.end, "bucket_s": plan.size,
                "drift_available": windows > 0, "metrics_windows": windows,
                "points": fill_series(plan, rows, drift, p95)}

    def _merged_buckets(self, device_id: str, plan: BucketPlan, drift: dict[int, float],
                        p95: dict[int, float]) -> int:
        """Drift and p95 per bucket from the device's metrics windows ending in it, merged:
        histograms add up, so a bucket of many short windows has enough rows for a PSI that
        no single window has. Returns how many windows there were."""
        m = metric_windows.c
        q = (sa.select(m.model, m.version, m.window_end, m.drift_psi, m.p95_latency_ms,
                       m.summary_json)
             .where(m.device_id == device_id, m.window_end >= plan.start,
                    m.window_end < plan.end))
        groups: dict[tuple[int, str, int], list[Any]] = defaultdict(list)
        with self.db.read() as conn:
            for r in conn.execute(q):
                index = plan.index(float(r.window_end))
                if index is not None:
                    groups[(index, r.model, int(r.version))].append(r)
        for (index, model, version), rows in groups.items():
            psi, latency = self._merge(model, version, rows)
            if psi is not None:
                drift[index] = max(psi, drift.get(index, psi))
            if latency is not None:
                p95[index] = max(latency, p95.get(index, latency))
        return sum(len(rows) for rows in groups.values())

    def _merge(self, model: str, version: int,
               rows: Sequence[Any]) -> tuple[float | None, float | None]:
        """(worst PSI, p95 latency) of the merged windows; the worst single window's figures
        when they cannot be merged (different profiles, no metrics store)."""
        if self.metrics_store is not None:
            try:
                summaries = [json.loads(r.summary_json) for r in rows]
                try:
                    merged = merge_summaries(summaries,
                                             profile=self.metrics_store.profile(model, version))
                except IncompatibleAggregates:
                    merged = merge_summaries(summaries)
                f = summary_figures(merged)
                return f["drift_psi"], (f["latency_ms"] or {}).get("p95")
            except (MonitoringError, ValueError, KeyError, TypeError, IndexError) as exc:
                log.debug("windows of %s:%s not merged: %s", model, version, exc)
        psis = [float(r.drift_psi) for r in rows if r.drift_psi is not None]
        latencies = [float(r.p95_latency_ms) for r in rows if r.p95_latency_ms is not None]
        return max(psis, default=None), max(latencies, default=None)

    def _window_quality(self, model: str, version: int, since: float) -> dict[str, Any]:
        """What only the merged metrics windows know: the label-free accuracy estimate with its
        interval, and the log loss and mean error of the labels (empty without windows)."""
        if self.metrics_store is None:
            return {}
        try:
            aggregate = self.metrics_store.version_aggregate(model, version, since=since)
        except (NotFoundError, MonitoringError, ValueError) as exc:
            log.debug("no window figures for %s:%s: %s", model, version, exc)
            return {}
        f = aggregate.get("figures") or {}
        return {k: f.get(k) for k in ("estimated_accuracy", "estimated_accuracy_ci",
                                      "estimate_method", "log_loss", "brier", "bias")}

    def model_summary(self, name: str, now: float, window: float,
                      group_by: str = DEFAULT_GROUP_LABEL,
                      placement: Mapping[int, Mapping[str, Any]] | None = None
                      ) -> dict[str, Any]:
        """Versions with their conversion parity, where each runs, and how it does there."""
        versions = self.registry.list_versions(name)  # NotFoundError for an unknown model
        facts = [f for f in self.device_facts() if f.model == name]
        since = now - window
        sums = self.window_sums(since, by=("model", "version"), model=name)
        _, seen = self.latest_windows(since)
        drift = self.merged_drift(now, window, None, [(name, v["version"]) for v in versions]) \
            if seen else {}
        by_group: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for f in facts:
            if f.version is not None:
                by_group[f.version][f.labels.get(group_by, "")] += 1
        out = []
        task = None
        for v in versions:
            manifest = self.registry.get_manifest(name, v["version"])
            task = manifest.task
            key = (name, v["version"])
            where = dict((placement or {}).get(v["version"], {}))
            out.append({
                **v, "precision": manifest.precision, "device_class": manifest.device_class,
                "parity": dict(manifest.parity),
                "source": dict(manifest.source), "opset": dict(manifest.opset),
                "manifest_created_at": manifest.created_at,
                "running": where.get("running", 0), "online": where.get("online", 0),
                "desired": where.get("desired", 0), "installing": where.get("installing", 0),
                "failed": where.get("failed", 0),
                "groups": dict(sorted(by_group.get(v["version"], {}).items())),
                "figures": {**sums.get(key, Sums()).figures(),
                            "drift_psi": drift.get(f"{name}:{v['version']}"),
                            **(self._window_quality(name, v["version"], since) if seen else {})},
            })
        return {"name": name, "task": task, "window_s": window, "group_by": group_by,
                "drift_available": seen, "versions": out}


def by_group_and_version(facts: Sequence[DeviceFacts], label: str,
                         values: Mapping[tuple[str, str, int], Any]
                         ) -> dict[tuple[str, str, int], list[Any]]:
    """Regroup per-(device, model, version) values under (group, model, version) keys."""
    group_of = {f.device_id: f.labels.get(label, "") for f in facts}
    out: dict[tuple[str, str, int], list[Any]] = defaultdict(list)
    for (device_id, model, version), value in values.items():
        if model is None or version is None or device_id not in group_of:
            continue
        out[(group_of[device_id], model, int(version))].append(value)
    return out

