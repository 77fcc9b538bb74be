"""Device metrics windows: stored once per window, added up per device, version, group or fleet.

Every ``metrics_window_s`` each agent writes one ``metrics`` record to its outbox: an additive
summary of its active model's window (``edgewise_monitoring/summary.py``). The telemetry store
hands those records to :func:`insert_windows` in the same transaction as the raw records, so a
window is stored exactly once (key: device, model, version, window start) and acknowledged only
after the commit.

Aggregates never look at raw predictions: they add window summaries with
:func:`~edgewise_monitoring.merge_summaries` and recompute the figures (accuracy, F1, MAE,
latency quantiles, PSI against the reference profile with a threshold for the merged size).
Summaries are stored without the reference proportions ("expected"); merging takes the profile
from the registered manifest of the model version, so summaries from agents that embedded it and
agents that did not add up alike.

A time range selects the windows that *overlap* it: ``window_end > since`` and
``window_start < until``. Windows are the unit; a window is never split.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from controller.errors import NotFoundError, ValidationError
from controller.monitoring.figures import NO_FIGURES, VersionFigures, figures
from controller.storage.db import Database
from controller.storage.tables import device_labels, devices, metrics, model_versions
from edgewise_monitoring import (
    IncompatibleAggregates,
    MonitoringError,
    merge_summaries,
)
from edgewise_monitoring.summary import SUMMARY_SCHEMA

log = logging.getLogger("edgewise.controller.metrics")

_IN_CHUNK = 500
_MANIFEST_CACHE = 256




class MetricsStore:
    """Reads and aggregates the ``metrics`` table (written by :func:`insert_windows`)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.stats: Counter[str] = Counter()
        self._manifests: dict[tuple[str, int], dict[str, Any]] = {}
        self._lock = threading.Lock()

    # -- the rollout engine's view (stable signature) -------------------------------------------

    def version_figures(self, device_ids: Sequence[str], model: str, version: int,
                        since: float) -> dict[str, VersionFigures]:
        """Figures of ``model:version`` per device from the windows ending after ``since``.

        Every requested device is in the result; a device without such windows gets
        :data:`NO_FIGURES` (zero predictions, no figures).
        """
        out = {d: NO_FIGURES for d in device_ids}
        by_device = self._summaries(model, version, since=since, device_ids=list(device_ids))
        for device_id, summaries in by_device.items():
            merged = self._merge(summaries, model, version)
            if merged is None:
                continue
            f = figures(merged)
            out[device_id] = VersionFigures(
                accuracy=f["accuracy"], labelled=f["labelled"],
                p95_latency_ms=f["latency_ms"]["p95"], drift_psi=f["drift_psi"],
                predictions=f["predictions"])
        return out

    # -- aggregates ----------------------------------------------------------------------------

    def device_aggregate(self, device_id: str, *, since: float | None = None,
                         until: float | None = None) -> list[dict[str, Any]]:
        """One aggregate per model version the device ran in the range, newest version last."""
        q = (sa.select(metrics.c.model, metrics.c.version, metrics.c.summary_json)
             .where(metrics.c.device_id == device_id)
             .order_by(metrics.c.model, metrics.c.version, metrics.c.window_start))
        q = _in_range(q, since, until)
        with self.db.read() as conn:
            if conn.execute(sa.select(devices.c.device_id)
                            .where(devices.c.device_id == device_id)).first() is None:
                raise NotFoundError("device", device_id)
            rows = conn.execute(q).all()
        groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            groups[(r.model, int(r.version))].append(json.loads(r.summary_json))
        out = []
        for (model, version), summaries in groups.items():
            agg = self._aggregate(summaries, model, version, devices_seen=1)
            if agg is not None:
                out.append({"device_id": device_id, **agg})
        return out

    def version_aggregate(self, model: str, version: int, *, since: float | None = None,
                          until: float | None = None, selector: str | None = None,
                          per_device: bool = False) -> dict[str, Any]:
        """Fleet-wide aggregate of ``model:version`` (optionally over devices matching a label
        ``selector`` such as ``site=berlin``); ``per_device`` adds each device's figures."""
        device_ids = self._select_devices(selector) if selector else None
        by_device = self._summaries(model, version, since=since, until=until,
                                    device_ids=device_ids)
        everything = [s for summaries in by_device.values() for s in summaries]
        agg = self._aggregate(everything, model, version, devices_seen=len(by_device))
        if agg is None:
            agg = _empty(model, version)
        if selector:
            agg["selector"] = selector
        if per_device:
            devices_out = {}
            for device_id, summaries in sorted(by_device.items()):
                merged = self._merge(summaries, model, version)
                if merged is not None:
                    devices_out[device_id] = figures(merged)
            agg["devices"] = devices_out
        return agg

    def group_aggregate(self, model: str, version: int, label: str, *,
                        since: float | None = None,
                        until: float | None = None) -> dict[str, dict[str, Any]]:
        """Aggregate of ``model:version`` per value of the device label ``label`` (devices
        without that label are grouped under ``""``)."""
        labels = self._device_labels()
        by_device = self._summaries(model, version, since=since, until=until)
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        members: dict[str, set[str]] = defaultdict(set)
        for device_id, summaries in by_device.items():
            value = labels.get(device_id, {}).get(label, "")
            groups[value].extend(summaries)
            members[value].add(device_id)
        out = {}
        for value in sorted(groups):
            agg = self._aggregate(groups[value], model, version, devices_seen=len(members[value]))
            if agg is not None:
                out[value] = {"label": label, "value": value, **agg}
        return out

    def fleet_overview(self, *, since: float | None = None,
                       until: float | None = None) -> list[dict[str, Any]]:
        """Every model version with windows in the range, each aggregated fleet-wide."""
        q = sa.select(metrics.c.model, metrics.c.version).distinct()
        q = _in_range(q, since, until).order_by(metrics.c.model, metrics.c.version)
        with self.db.read() as conn:
            versions = [(r.model, int(r.version)) for r in conn.execute(q)]
        return [self.version_aggregate(m, v, since=since, until=until) for m, v in versions]

    def windows(self, device_id: str, *, since: float | None = None, until: float | None = None,
                limit: int = 1000) -> list[dict[str, Any]]:
        """The device's windows (newest first) with their per-window figures, no summaries."""
        m = metrics.c
        q = (sa.select(m.model, m.version, m.window_start, m.window_end, m.predictions, m.errors,
                       m.labelled, m.accuracy, m.p95_latency_ms, m.drift_psi, m.drifted)
             .where(m.device_id == device_id)
             .order_by(m.window_start.desc()).limit(limit))
        q = _in_range(q, since, until)
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def count(self, device_id: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(metrics)
        if device_id is not None:
            q = q.where(metrics.c.device_id == device_id)
        with self.db.read() as conn:
            return int(conn.execute(q).scalar_one())

    # -- internals -----------------------------------------------------------------------------

    def _summaries(self, model: str, version: int, *, since: float | None = None,
                   until: float | None = None,
                   device_ids: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
        m = metrics.c
        base = (sa.select(m.device_id, m.summary_json)
                .where(m.model == model, m.version == version)
                .order_by(m.device_id, m.window_start))
        base = _in_range(base, since, until)
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        with self.db.read() as conn:
            if device_ids is None:
                chunks: Iterable[Any] = [base]
            else:
                chunks = (base.where(m.device_id.in_(device_ids[i:i + _IN_CHUNK]))
                          for i in range(0, len(device_ids), _IN_CHUNK))
            for q in chunks:
                for r in conn.execute(q):
                    out[r.device_id].append(json.loads(r.summary_json))
        return out

    def _select_devices(self, selector: str) -> list[str]:
        from controller.fleet.selectors import parse_selector

        parsed = parse_selector(selector)
        return [d for d, labels in self._device_labels().items() if parsed.matches(labels)]

    def _device_labels(self) -> dict[str, dict[str, str]]:
        """Every device's labels as selectors see them: the operator's (``device_labels``)
        laid over the device's own."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(devices.c.device_id, devices.c.labels_json)).all()
            operator = conn.execute(sa.select(device_labels.c.device_id, device_labels.c.key,
                                              device_labels.c.value)).all()
        out: dict[str, dict[str, str]] = {}
        for r in rows:
            try:
                labels = json.loads(r.labels_json or "{}")
            except ValueError:
                labels = {}
            out[r.device_id] = ({str(k): str(v) for k, v in labels.items()}
                                if isinstance(labels, dict) else {})
        for device_id, key, value in operator:
            out.setdefault(device_id, {})[key] = value
        return out

    def manifest(self, model: str, version: int) -> dict[str, Any] | None:
        """The registered manifest (as a dict) of ``model:version``, or None if unknown.
        Cached: a registered version never changes."""
        key = (model, version)
        with self._lock:
            if key in self._manifests:
                return self._manifests[key]
        with self.db.read() as conn:
            raw = conn.execute(sa.select(model_versions.c.manifest_json).where(
                model_versions.c.model == model, model_versions.c.version == version)).scalar()
        if raw is None:
            return None  # not cached: it may be registered later
        try:
            manifest = json.loads(raw)
        except ValueError:
            manifest = {}
        if not isinstance(manifest, dict):
            manifest = {}
        with self._lock:
            if len(self._manifests) >= _MANIFEST_CACHE:
                self._manifests.pop(next(iter(self._manifests)))
            self._manifests[key] = manifest
        return manifest

    def profile(self, model: str, version: int) -> dict[str, Any] | None:
        """The reference profile of a registered version, or None."""
        manifest = self.manifest(model, version)
        profile = manifest.get("reference_profile") if manifest else None
        return profile if isinstance(profile, dict) and profile else None

    def reference_quality(self, model: str, version: int) -> tuple[float | None, float | None]:
        """(accuracy, MAE) of the version on the converter's labelled sample, when known
        (``parity.artifact_accuracy`` / ``parity.artifact_mae`` of the manifest)."""
        manifest = self.manifest(model, version)
        parity = manifest.get("parity") if manifest else None
        if not isinstance(parity, dict):
            return None, None
        return _finite(parity.get("artifact_accuracy")), _finite(parity.get("artifact_mae"))

    def _merge(self, summaries: list[dict[str, Any]], model: str,
               version: int) -> dict[str, Any] | None:
        """Merge what is compatible with the first summary; count what is not."""
        if not summaries:
            return None
        first = summaries[0]
        compatible = [s for s in summaries if _identity(s) == _identity(first)]
        skipped = len(summaries) - len(compatible)
        if skipped:
            self.stats["summaries_incompatible"] += skipped
            log.warning("%s:%s: %d window summaries differ in profile or settings from the rest "
                        "and were left out of an aggregate", model, version, skipped)
        profile = self.profile(model, version)
        try:
            return merge_summaries(compatible, profile=profile)
        except IncompatibleAggregates:
            pass  # the registered profile is not what the devices counted against
        try:
            return merge_summaries(compatible)  # figures without drift rather than none at all
        except (IncompatibleAggregates, KeyError, TypeError, ValueError) as exc:
            self.stats["summaries_incompatible"] += len(compatible)
            log.warning("%s:%s: window summaries cannot be added up: %s", model, version, exc)
            return None

    def _aggregate(self, summaries: list[dict[str, Any]], model: str, version: int,
                   devices_seen: int) -> dict[str, Any] | None:
        merged = self._merge(summaries, model, version)
        if merged is None:
            return None
        return {"model": model, "version": version, "devices_reporting": devices_seen,
                "windows": len(summaries), "start_ts": merged["start_ts"],
                "end_ts": merged["end_ts"], "figures": figures(merged), "summary": merged}

    def store_windows(self, conn: sa.Connection, device_id: str, epoch: int,
                      records: Sequence[Mapping[str, Any]], received_at: float) -> int:
        """Store a telemetry batch's ``metrics`` records inside the caller's transaction (the
        telemetry store's :data:`~controller.fleet.telemetry_store.WindowSink`)."""
        return insert_windows(self, conn, device_id, epoch, records, received_at)




def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _identity(summary: Mapping[str, Any]) -> tuple[Any, ...]:
    return (summary.get("schema"), summary.get("task"), summary.get("profile_id"),
            summary.get("reference_n"), json.dumps(summary.get("params"), sort_keys=True))


def _empty(model: str, version: int) -> dict[str, Any]:
    return {"model": model, "version": version, "devices_reporting": 0, "windows": 0,
            "start_ts": None, "end_ts": None, "figures": None, "summary": None}


def _in_range(q: Any, since: float | None, until: float | None) -> Any:
    if since is not None:
        q = q.where(metrics.c.window_end > since)
    if until is not None:
        q = q.where(metrics.c.window_start < until)
    return q


# -- ingestion (called by the telemetry store inside its transaction) ---------------------------

def _strip_reference(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without embedded reference proportions (merging takes them from the
    registered profile), so windows from all agents add up alike."""
    out = dict(summary)
    out["features"] = [{k: v for k, v in f.items() if k != "expected"}
                       for f in summary.get("features") or []]
    if isinstance(summary.get("prediction"), dict):
        out["prediction"] = {k: v for k, v in summary["prediction"].items() if k != "expected"}
    return out


def window_row(store: MetricsStore, device_id: str, epoch: int, record: Mapping[str, Any],
               received_at: float) -> dict[str, Any]:
    """Validate one ``metrics`` record and build its ``metrics`` row; ValidationError if bad."""
    model, version, summary = record.get("model"), record.get("version"), record.get("summary")
    if not isinstance(model, str) or not model or len(model) > 128:
        raise ValidationError("metrics record needs a model name")
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < 2**31:
        raise ValidationError("metrics record needs an integer version")
    if not isinstance(summary, dict) or summary.get("schema") != SUMMARY_SCHEMA:
        raise ValidationError(f"metrics record needs a summary of schema {SUMMARY_SCHEMA}")
    profile = store.profile(model, version)
    try:
        # recompute every figure from the additive parts: checks the structure on the way
        try:
            merged = merge_summaries([summary], profile=profile)
        except IncompatibleAggregates:
            merged = merge_summaries([summary])
        stored = _strip_reference(merged)
        start, end = float(merged["start_ts"]), float(merged["end_ts"])
        f = figures(merged)
        payload = json.dumps(stored, separators=(",", ":"), allow_nan=False)
    except (MonitoringError, KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise ValidationError(f"metrics summary is malformed: {type(e).__name__}: {e}") from e
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise ValidationError("metrics window needs finite start_ts <= end_ts")
    return {
        "device_id": device_id, "model": model, "version": version,
        "window_start": start, "window_end": end, "epoch": epoch,
        "seq": int(record.get("seq", 0)),
        "predictions": f["predictions"], "errors": f["errors"], "labelled": f["labelled"],
        "accuracy": f["accuracy"], "p95_latency_ms": f["latency_ms"]["p95"],
        "drift_psi": f["drift_psi"], "drifted": f["drifted"],
        "summary_json": payload, "received_at": received_at,
    }


def insert_windows(store: MetricsStore, conn: sa.Connection, device_id: str, epoch: int,
                   records: Sequence[Mapping[str, Any]], received_at: float) -> int:
    """Insert the batch's ``metrics`` records (idempotent); return how many were new.

    A malformed record is logged and counted (``stats["windows_invalid"]``); its raw record is
    still kept in the telemetry table, and the rest of the batch is stored.
    """
    rows = []
    for record in records:
        try:
            rows.append(window_row(store, device_id, epoch, record, received_at))
        except ValidationError as e:
            store.stats["windows_invalid"] += 1
            log.warning("metrics window from %s (seq %s) not aggregated: %s", device_id,
                        record.get("seq"), e)
    if not rows:
        return 0
    stmt = store.db.insert_ignore(metrics).returning(metrics.c.window_start)
    inserted = len(conn.execute(stmt, rows).all())
    store.stats["windows_stored"] += inserted
    return inserted
