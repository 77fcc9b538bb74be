"""What the REST API, the CLI, the dashboard and /metrics show of device health: one device's
windows, its alerts and its versions' cost; every device's newest window; the firing alerts.

The fleet-wide alert evaluation reads up to ``leak_lookback_s`` of windows of every device; it
is cached for ``cache_s`` so a dashboard and a Prometheus scrape do not repeat it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from controller.device_health.rules import HealthAlert, HealthThresholds, evaluate
from controller.device_health.store import HealthStore
from controller.errors import NotFoundError


class DeviceHealthViews:
    def __init__(self, store: HealthStore, thresholds: HealthThresholds | None = None, *,
                 cache_s: float = 15.0, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.thresholds = thresholds or HealthThresholds()
        self.cache_s = cache_s
        self.clock = clock
        self._cache: tuple[float, list[HealthAlert]] | None = None
        self._lock = threading.Lock()

    def device(self, device_id: str, since: float) -> dict[str, Any]:
        """``device_id``'s windows ending since ``since``, its firing alerts (judged on the
        windows of the alert look-back, not only those shown) and each version's cost."""
        if not self.store.is_known(device_id):
            raise NotFoundError("device", device_id)
        now = self.clock()
        windows = self.store.history(device_id, since)
        lookback = now - max(self.thresholds.leak_lookback_s, self.thresholds.recent_s)
        points = self.store.points(min(lookback, since), [device_id]).get(device_id, [])
        alerts = evaluate({device_id: points}, now, self.thresholds) if points else []
        costs: dict[tuple[str, int], dict[str, Any]] = {}
        for w in windows:
            if w["model"] is None or w["version"] is None:
                continue
            c = costs.setdefault((w["model"], w["version"]), {
                "model": w["model"], "version": w["version"], "session_bytes": None,
                "predictions": 0, "cpu_s": 0.0, "peak_rss_bytes": None, "windows": 0})
            c["windows"] += 1
            if w["session_bytes"] is not None:
                c["session_bytes"] = max(c["session_bytes"] or 0.0, w["session_bytes"])
            c["predictions"] += w["predictions"] or 0
            c["cpu_s"] += w["cpu_s"] or 0.0
            if w["rss_max_bytes"] is not None:
                c["peak_rss_bytes"] = max(c["peak_rss_bytes"] or 0.0, w["rss_max_bytes"])
        for c in costs.values():
            n = c["predictions"]
            c["cpu_ms_per_prediction"] = c["cpu_s"] * 1000.0 / n if n else None
        return {"device_id": device_id, "since": since,
                "latest": windows[-1] if windows else None, "windows": windows,
                "alerts": [a.to_dict() for a in alerts],
                "thresholds": self.thresholds.to_dict(),
                "versions": sorted(costs.values(), key=lambda c: (c["model"], c["version"]))}

    def latest(self, device_ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        return self.store.latest(device_ids)

    def alerts(self) -> list[HealthAlert]:
        """Every device's firing health alerts (cached for ``cache_s``)."""
        now = self.clock()
        with self._lock:
            if self._cache is not None and now - self._cache[0] < self.cache_s:
                return self._cache[1]
        t = self.thresholds
        points = self.store.points(now - max(t.leak_lookback_s, t.recent_s))
        alerts = evaluate(points, now, t)
        with self._lock:
            self._cache = (now, alerts)
        return alerts

    def forget_cache(self) -> None:
        with self._lock:
            self._cache = None
