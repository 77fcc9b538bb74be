"""A controller whose database holds a known drift history, for the drift view's tests.

Model ``drifty`` has three features (``temp``, ``load``, ``humidity``) and a two-class
prediction decided by ``temp``:

- v1 is old and was registered without a reference profile;
- v2 runs on four devices (``d-1``, ``d-2`` in berlin; ``d-3``, ``d-4`` in oslo), each sending
  a 60 s window of 60 rows every minute for the last hour. 60 rows are too few for a feature's
  figure in one window (10 bins need 100), but a 5-minute bucket of the fleet holds over 900;
- at ``SHIFT_AGO`` seconds before now, ``load`` shifts by two standard deviations on the berlin
  devices only; ``temp``, ``humidity`` and the prediction never move;
- ``d-4`` moves to v3 (another profile) at ``SWITCH_AGO`` seconds before now, through a
  completed rollout; ``d-3`` also sent three v2 windows counted against v3's profile (an agent
  with a stale manifest), which the view must skip and count;
- drift alerts fired on ``d-1`` and ``d-2`` ten seconds apart after the shift, and one on v3
  that v2's markers must not show.

Windows and reports go in through the stores' real write paths; the rollout row and alert events
are written as their stores write them (the view only reads those tables).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from controller.app.service import Controller
from controller.storage.tables import alert_events, rollouts
from edgewise_monitoring import MonitoringWindow
from edgewise_wire import ModelRef, Reported, SmokeTest, TelemetryBatch, TensorSpec
from tests.harness.app_controller import DATABASES, database_url, populated_app
from tests.harness.app_controller import make_controller as make_controller
from tests.harness.profiles import make_profile
from tests.integration.controller.store.conftest import build_manifest

MODEL = "drifty"
FEATURES = ("temp", "load", "humidity")
SHIFTED = "load"
DEVICES = {"d-1": "berlin", "d-2": "berlin", "d-3": "oslo", "d-4": "oslo"}
DRIFTING = ("d-1", "d-2")
WINDOW_S, ROWS = 60.0, 60
HOUR = 3600.0
SHIFT_AGO = 1800.0
SWITCH_AGO = 900.0
STALE_WINDOWS = 3


def first_alert_ts(now: float) -> float:
    """When d-1's drift alert fired (d-2's ten seconds later): about five minutes after the
    shift, placed a minute into an aligned five-minute bucket, so the two alerts share their
    bucket (and their one-minute bucket) whichever second the views are asked at."""
    return (now - SHIFT_AGO + 300) // 300 * 300 + 60
_NORMAL = NormalDist()


def _profile(seed: int, scale: float = 1.0) -> dict[str, Any]:
    reference = np.random.default_rng(seed).normal(size=(5000, 3)) * scale
    profile = make_profile(reference, (reference[:, 0] > 0).astype(int), labels=[0, 1])
    for feature, name in zip(profile["features"], FEATURES, strict=True):
        feature["name"] = name
    return profile


PROFILE = _profile(0)
OTHER_PROFILE = _profile(1, scale=1.5)  # v3's


def _stratified(rng: np.random.Generator, rows: int) -> np.ndarray:
    """``rows`` standard normal values, one from each 1/rows slice of its quantiles, shuffled:
    every window (and any sum of windows) then holds what the reference says it should, so
    that "the others stay low" holds for every bucket, however the clock cuts them; plain
    random rows put a thin bucket over its threshold 1% of the time, by design."""
    quantiles = (np.arange(rows) + rng.uniform(size=rows)) / rows
    return rng.permutation(np.array([_NORMAL.inv_cdf(float(q)) for q in quantiles]))


def window(profile: dict[str, Any], start: float, *, shift: float = 0.0, seed: int = 0,
           rows: int = ROWS) -> dict[str, Any]:
    """A real device window of ``rows`` rows, ``load`` shifted by ``shift`` sd."""
    rng = np.random.default_rng(seed)
    w = MonitoringWindow(profile, "classification", [0, 1], start_ts=start)
    x = np.column_stack([_stratified(rng, rows) for _ in FEATURES])
    x[:, 1] += shift
    pred = (x[:, 0] > 0).astype(int)
    p1 = 1 / (1 + np.exp(-4 * x[:, 0]))
    w.observe(x, pred, np.column_stack([1 - p1, p1]), rng.uniform(1.0, 3.0, size=rows))
    return w.summary(start + WINDOW_S)


def _reported(state: str, version: int | None, ts: float, site: str) -> Reported:
    active = ModelRef(MODEL, version, f"{version:x}" * 64) if version else None
    return Reported(state=state, active=active, target=None, deployment_id=None,
                    last_error=None, labels={"site": site}, agent_version="0.1.0", ts=ts)


def _register(c: Controller, profile: dict[str, Any], number: int) -> None:
    artifact = f"{MODEL}-v{number}".encode()
    manifest = dataclasses.replace(
        build_manifest(artifact, model=MODEL), reference_profile=profile,
        inputs=(TensorSpec("input", "float32", (None, 3)),), feature_names=FEATURES,
        smoke_tests=(SmokeTest([[0.0, 1.0, 0.0]], [1], [[0.2, 0.8]]),))
    c.registry.register(manifest, artifact)


def populate(c: Controller, now: float) -> None:
    for number, profile in enumerate(({}, PROFILE, OTHER_PROFILE), start=1):
        _register(c, profile, number)  # v1 (no profile), v2, v3
    start = now - HOUR
    for device, site in DEVICES.items():
        c.fleet.set_reported(device, _reported("active", 2, start - 600, site))
        c.fleet.set_presence(device, True, now - 10)
    c.fleet.set_reported("d-4", _reported("downloading", 2, now - SWITCH_AGO - 30, "oslo"))
    c.fleet.set_reported("d-4", _reported("active", 3, now - SWITCH_AGO, "oslo"))

    for n, device in enumerate(DEVICES):
        records = []
        for k in range(int(HOUR // WINDOW_S)):
            w_start = start + k * WINDOW_S
            on_v3 = device == "d-4" and w_start >= now - SWITCH_AGO
            shift = 2.0 if device in DRIFTING and w_start >= now - SHIFT_AGO else 0.0
            records.append({"kind": "metrics", "ts": w_start + WINDOW_S, "model": MODEL,
                            "version": 3 if on_v3 else 2,
                            "summary": window(OTHER_PROFILE if on_v3 else PROFILE, w_start,
                                              shift=shift, seed=1000 * n + k)})
        if device == "d-3":
            for k in range(STALE_WINDOWS):
                w_start = now - 600 + 30 + k * WINDOW_S  # starts unlike its regular windows'
                records.append({"kind": "metrics", "ts": w_start + WINDOW_S, "model": MODEL,
                                "version": 2, "summary": window(OTHER_PROFILE, w_start,
                                                                seed=99 + k)})
        for seq, record in enumerate(records, start=1):
            record["seq"] = seq
        c.telemetry.store_batch(device, TelemetryBatch(1, len(records), records, epoch=n + 1),
                                now)

    with c.db.write() as conn:
        conn.execute(rollouts.insert().values(
            name="drifty-v3-oslo", model=MODEL, version=3, spec_json="{}", state_json="{}",
            status="completed", priority=0, revision=3, created_at=now - SWITCH_AGO - 60,
            updated_at=now - SWITCH_AGO + 60, created_by="operator:test"))
        conn.execute(alert_events.insert(), [
            _alert(first_alert_ts(now), "d-1", 2, "fired", "load drifted (PSI 1.9)"),
            _alert(first_alert_ts(now) + 10, "d-2", 2, "fired", "load drifted (PSI 2.1)"),
            _alert(now - SWITCH_AGO + 120, "d-4", 3, "fired", "temp drifted"),
        ])


def _alert(ts: float, device: str, version: int, event: str, detail: str) -> dict[str, Any]:
    return {"ts": ts, "kind": "drift", "device_id": device, "event": event, "model": MODEL,
            "version": version, "value": 1.0, "threshold": 0.2, "detail": detail,
            "context_json": json.dumps({})}


@dataclass
class DriftFleet:
    controller: Controller
    client: TestClient
    now: float

    def get(self, **params: Any) -> Any:
        return self.client.get(f"/api/v1/drift/{MODEL}", params=params)


@pytest.fixture(scope="module", params=DATABASES)
def drift_fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[DriftFleet]:
    """The known drift history, read-only for the tests that use it (module scope)."""
    with populated_app(tmp_path_factory.mktemp("drift"), populate,
                       database_url(request)) as (c, client, now):
        yield DriftFleet(c, client, now)


def count_windows(c: Controller, version: int) -> int:
    from controller.storage.tables import metrics

    with c.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(metrics).where(
            metrics.c.model == MODEL, metrics.c.version == version)).scalar_one())
