"""The drift read model: which feature of a model version drifted, over time and across the
fleet, per device or per label group, with markers for version changes and alerts.

The queries and the cache live here; adding counts, PSI, ranking and marker placement are pure
(:mod:`controller.monitoring.drift_series`, :mod:`controller.monitoring.drift_markers`). Windows
are placed in the bucket their end falls in, as on a device's drift chart
(``controller/web/health.py``), so the two line up.

Served by ``GET /api/v1/drift/{model}`` (``controller/monitoring/drift_api.py``), read by
`edgewise drift`, the dashboard's model page and the ``edgewise_feature_drift_psi`` gauge.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any, Literal

import sqlalchemy as sa

from controller.errors import NotFoundError, ValidationError
from controller.fleet.queries import load_labels, operator_labels
from controller.fleet.selectors import DEFAULT_GROUP_LABEL
from controller.monitoring import drift_markers as mk
from controller.monitoring.drift_buckets import MAX_WINDOWS, BucketTallies, parse_summary
from controller.monitoring.drift_series import (
    MALFORMED,
    OTHER_PROFILE,
    Reference,
    Tally,
    collect,
    drift_by,
    newest_settings,
    series,
    verdicts,
)
from controller.storage.db import Database
from controller.storage.tables import (
    alert_events,
    deployments,
    device_history,
    devices,
    metrics,
    model_versions,
    rollouts,
)
from controller.timebuckets import BucketPlan, plan_buckets
from edgewise_monitoring import ProfileError

log = logging.getLogger("edgewise.controller.drift")

By = Literal["feature", "device", "group"]
BY_VALUES: tuple[By, ...] = ("feature", "device", "group")
MAX_ALERT_EVENTS = 5000
CACHE_S = 10.0  # every open dashboard polls every 5 s; the figures move per bucket, not per poll
_CACHE_ENTRIES = 64

ProfileSource = Callable[[str, int], Mapping[str, Any] | None]  # registered profile or None


class DriftViews:
    def __init__(self, db: Database, profile_of: ProfileSource, cache_s: float = CACHE_S) -> None:
        self.db = db
        self.profile_of = profile_of
        self.cache_s = cache_s
        self.buckets = BucketTallies(db)  # the per-feature series' tallies, kept between calls
        self._cache: dict[tuple[Any, ...], tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    # -- the views -------------------------------------------------------------------------------

    def resolve(self, model: str, version: int | None) -> int:
        """``version``, or the latest registered one; NotFoundError for what is not registered."""
        v = model_versions.c
        with self.db.read() as conn:
            versions = {int(x) for x in conn.execute(
                sa.select(v.version).where(v.model == model)).scalars()}
        if not versions:
            raise NotFoundError("model", model)
        if version is None:
            return max(versions)
        if version not in versions:
            raise NotFoundError("model version", f"{model}:{version}")
        return version

    def view(self, model: str, version: int | None, now: float, window: float, buckets: int,
             by: By = "feature", group_by: str = DEFAULT_GROUP_LABEL, top: int | None = None,
             limit: int | None = None) -> dict[str, Any]:
        """The drift of ``model:version`` (default: the latest version) over the last
        ``window`` seconds: per feature in about ``buckets`` time buckets, or per device or
        label group (``group_by``) over the whole range; with the markers of the range.

        ``top`` keeps the most drifted histograms (``by="feature"``), ``limit`` the most
        drifted rows (device, group); the totals say how many there were."""
        if by not in BY_VALUES:
            raise ValidationError(f"by must be one of {BY_VALUES}, not {by!r}")
        version = self.resolve(model, version)
        plan = plan_buckets(now, window, buckets)
        key = (model, version, plan, by, group_by if by == "group" else None)
        full = self._cached(key, now)
        if full is None:
            full = self._build(model, version, plan, window, by, group_by)
            self._remember(key, now, full)
        out = dict(full)
        if by == "feature":
            out["features"] = full["features"][:top] if top else full["features"]
        else:
            out["rows"] = full["rows"][:limit] if limit else full["rows"]
        return out

    def latest(self, model: str, version: int, now: float, span: float) -> list[dict[str, Any]]:
        """Each histogram's drift over the fleet's windows of about the last ``span`` seconds,
        added up (for ``/metrics``); empty without a profile or windows.

        The range is rounded out to ten aligned buckets (at most a tenth longer), so that
        scrapes reuse the bucket tallies instead of parsing every window again."""
        reference, _ = self._reference(model, version)
        if reference is None:
            return []
        read = self.buckets.read(model, version, reference, plan_buckets(now, span, 10))
        tally = Tally.empty(reference)
        for t in read.tallies:
            tally.merge(t)
        if tally.settings is None:
            return []
        return verdicts(reference, tally, tally.settings)

    # -- building --------------------------------------------------------------------------------

    def _build(self, model: str, version: int, plan: BucketPlan, window: float, by: By,
               group_by: str) -> dict[str, Any]:
        reference, problem = self._reference(model, version)
        out: dict[str, Any] = {
            "model": model, "version": version, "by": by,
            "group_by": group_by if by == "group" else None,
            "window_s": window, "start": plan.start, "end": plan.end, "bucket_s": plan.size,
            "status": "ok", "reason": None, "has_profile": reference is not None,
            "windows": 0, "devices": 0, "rows_predicted": 0, "skipped": {}, "truncated": False,
            "settings": None, "buckets": [], "features": [], "features_total": 0,
            "rows": [], "rows_total": 0,
            "markers": self._markers(model, version, plan),
        }
        ref = f"{model}:{version}"
        if reference is None:
            out["status"] = "no_profile"
            out["reason"] = problem or (
                f"{ref} was registered without a reference profile (a manifest from before "
                "profiles, or one not made by the converter), so its drift cannot be measured; "
                "a version pushed with `edgewise models push` has one")
            return out
        if by == "feature":
            read = self.buckets.read(model, version, reference, plan)
            figures = series(reference, plan, read.tallies)
            skipped, seen, truncated = read.skipped, read.seen, read.truncated
            out.update(settings=figures["settings"], windows=figures["windows"],
                       devices=figures["devices"], rows_predicted=figures["rows"],
                       buckets=figures["buckets"], features=figures["features"],
                       features_total=len(figures["features"]))
        else:
            rows, truncated = self._windows(model, version, plan.start, plan.end)
            kept, skipped = collect(reference, rows)
            seen = len(rows)
            key_of = self._group_of(group_by) if by == "group" else (lambda d: d)
            drift = drift_by(reference, kept, key_of)
            settings = newest_settings(kept)
            out.update(settings=settings.to_dict() if settings else None, windows=len(kept),
                       devices=len({w.device_id for w in kept}),
                       rows_predicted=sum(w.rows for w in kept), rows=drift,
                       rows_total=len(drift), features_total=len(reference.histograms))
        out["skipped"] = dict(sorted(skipped.items()))
        out["truncated"] = truncated
        if truncated:
            out["reason"] = (f"more than {MAX_WINDOWS} windows in this range: only the newest "
                             "are counted; choose a shorter range")
        if not out["windows"]:
            out["status"] = "no_windows"
            out["reason"] = out["reason"] or _why_empty(ref, seen, skipped)
        return out

    def _reference(self, model: str, version: int) -> tuple[Reference | None, str | None]:
        try:
            return Reference.from_profile(self.profile_of(model, version)), None
        except ProfileError as exc:
            return None, f"the reference profile of {model}:{version} cannot be read: {exc}"

    def _windows(self, model: str, version: int, since: float, until: float
                 ) -> tuple[list[tuple[str, float, dict[str, Any]]], bool]:
        """``(device, window end, summary)`` of the windows ending in ``[since, until)``, the
        newest :data:`MAX_WINDOWS`; and whether there were more."""
        m = metrics.c
        q = (sa.select(m.device_id, m.window_end, m.summary_json)
             .where(m.model == model, m.version == version, m.window_end >= since,
                    m.window_end < until)
             .order_by(m.window_end.desc()).limit(MAX_WINDOWS + 1))
        with self.db.read() as conn:
            out = [(r.device_id, float(r.window_end), parse_summary(r.summary_json))
                   for r in conn.execute(q)]
        return out[:MAX_WINDOWS], len(out) > MAX_WINDOWS

    def _group_of(self, label: str) -> Callable[[str], str]:
        """Device id -> the value of its label ``label`` (operator labels over its own; ``""``
        without it), as the fleet views group."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(devices.c.device_id, devices.c.labels_json)).all()
            overrides = operator_labels(conn, None)
        groups = {r.device_id: {**load_labels(r.labels_json),
                                **overrides.get(r.device_id, {})}.get(label, "")
                  for r in rows}
        return lambda device_id: groups.get(device_id, "")

    def _markers(self, model: str, version: int, plan: BucketPlan) -> list[dict[str, Any]]:
        since, until = plan.start, plan.end
        h, r, d, a = device_history.c, rollouts.c, deployments.c, alert_events.c
        ran = sa.select(h.device_id).where(h.model == model, h.version == version).distinct()
        before = (sa.select(sa.func.max(h.id).label("id"))
                  .where(h.device_id.in_(ran), h.ts < since).group_by(h.device_id))
        with self.db.read() as conn:
            history_rows = conn.execute(
                sa.select(h.device_id, h.ts, h.model, h.version)
                .where(h.device_id.in_(ran), sa.or_(h.id.in_(before),
                                                    sa.and_(h.ts >= since, h.ts < until)))
                .order_by(h.device_id, h.id)).all()
            rollout_rows = conn.execute(
                sa.select(r.id, r.name, r.model, r.version, r.status, r.created_at,
                          r.updated_at)
                .where(r.model == model, r.updated_at >= since, r.created_at < until)).all()
            deployment_rows = conn.execute(
                sa.select(d.deployment_id, d.model, d.version, d.created_at)
                .where(d.model == model, d.created_at >= since, d.created_at < until)).all()
            alert_rows = conn.execute(
                sa.select(a.ts, a.kind, a.device_id, a.event, a.detail)
                .where(a.model == model, a.version == version, a.ts >= since, a.ts < until)
                .order_by(a.ts.desc()).limit(MAX_ALERT_EVENTS)).all()
        history: dict[str, list[mk.HistoryRow]] = defaultdict(list)
        for row in history_rows:
            history[row.device_id].append(mk.HistoryRow(
                float(row.ts), row.model, None if row.version is None else int(row.version)))
        events = [
            *mk.version_changes(history, model, version, since, until),
            *mk.rollout_events((dict(x._mapping) for x in rollout_rows), since, until),
            *mk.deployment_events((dict(x._mapping) for x in deployment_rows), since, until),
            *mk.alert_events((dict(x._mapping) for x in alert_rows), since, until),
        ]
        return mk.coalesce(events, plan)

    # -- cache -----------------------------------------------------------------------------------

    def _cached(self, key: tuple[Any, ...], now: float) -> dict[str, Any] | None:
        if self.cache_s <= 0:
            return None
        with self._lock:
            hit = self._cache.get(key)
        return hit[1] if hit is not None and 0 <= now - hit[0] < self.cache_s else None

    def _remember(self, key: tuple[Any, ...], now: float, value: dict[str, Any]) -> None:
        if self.cache_s <= 0:
            return
        with self._lock:
            if len(self._cache) >= _CACHE_ENTRIES:
                self._cache.clear()
            self._cache[key] = (now, value)


def _why_empty(ref: str, seen: int, skipped: Mapping[str, int]) -> str:
    if not seen:
        return f"no metrics window of {ref} ended in this range"
    parts = []
    if skipped.get(OTHER_PROFILE):
        parts.append(f"{skipped[OTHER_PROFILE]} counted against another reference profile")
    if skipped.get(MALFORMED):
        parts.append(f"{skipped[MALFORMED]} not readable as this profile's histograms")
    return (f"none of the {seen} metrics windows of {ref} in this range can be compared with "
            f"its registered profile: " + "; ".join(parts))
