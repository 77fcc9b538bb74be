"""A controller with a small, known fleet in its database, for the view endpoints' tests.

The data goes in through the stores' real write paths (reported state, presence, telemetry
batches with metrics windows, deployments), on SQLite and on PostgreSQL; the HTTP side is the
real app (``create_app``) driven in-process. The MQTT bridge is not started.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from controller.app.service import Controller
from edgewise_monitoring import MonitoringWindow
from edgewise_wire import ModelRef, Reported, TelemetryBatch
from tests.harness.app_controller import DATABASES, database_url, populated_app
from tests.harness.app_controller import make_controller as make_controller
from tests.harness.profiles import make_profile
from tests.integration.controller.store.conftest import build_manifest

REFERENCE = np.random.default_rng(0).normal(size=(5000, 2))
PROFILE = make_profile(REFERENCE, (REFERENCE[:, 0] > 0).astype(int), labels=[0, 1])
PARITY = {"n": 60, "max_abs_diff": 2.5e-7, "label_agreement": 1.0, "artifact_accuracy": 0.95,
          "tolerance": 1e-4}
SHA = {1: "a" * 64, 2: "b" * 64}


def window_summary(start: float, n: int = 400, *, shift: float = 0.0,
                   seed: int = 1) -> dict[str, Any]:
    """A real device metrics window of n rows, the first feature shifted by ``shift`` sd."""
    rng = np.random.default_rng(seed)
    w = MonitoringWindow(PROFILE, "classification", [0, 1], start_ts=start)
    x = rng.normal(size=(n, 2))
    x[:, 0] += shift
    pred = (x[:, 0] > 0).astype(int)
    p1 = 1 / (1 + np.exp(-4 * x[:, 0]))
    w.observe(x, pred, np.column_stack([1 - p1, p1]), rng.uniform(1.0, 3.0, size=n))
    w.observe_feedback(pred[: n // 2], pred[: n // 2])
    return w.summary(start + 60.0)


@dataclass
class Fleet:
    controller: Controller
    client: TestClient
    now: float


def _reported(state: str, active: int | None, target: int | None = None,
              labels: dict[str, str] | None = None, error: str | None = None,
              ts: float = 0.0, deployment: str | None = None) -> Reported:
    return Reported(state=state,
                    active=ModelRef("iris", active, SHA[active]) if active else None,
                    target=ModelRef("iris", target, SHA[target]) if target else None,
                    deployment_id=deployment, last_error=error, labels=labels or {},
                    agent_version="0.1.0", ts=ts)


def populate(c: Controller, now: float) -> None:
    """Five devices: two in berlin (one on v2), one offline in oslo, one in lisbon whose
    update to v2 failed, one without labels and without a model."""
    for version in (1, 2):
        artifact = f"iris-v{version}".encode()
        manifest = dataclasses.replace(build_manifest(artifact), reference_profile=PROFILE,
                                       parity=PARITY, source={"framework": "test",
                                                              "estimator": "Stub"})
        c.registry.register(manifest, artifact)
    fleet = c.fleet
    berlin = {"site": "berlin", "hw": "pi4"}
    fleet.set_reported("b-1", _reported("idle", None, labels=berlin, ts=now - 600))
    fleet.set_reported("b-1", _reported("active", 1, labels=berlin, ts=now - 590))
    fleet.set_reported("b-2", _reported("active", 2, labels={"site": "berlin", "hw": "pi5"},
                                        ts=now - 500))
    fleet.set_reported("o-1", _reported("active", 1, labels={"site": "oslo"}, ts=now - 500))
    lisbon = {"site": "lisbon"}
    fleet.set_reported("l-1", _reported("active", 1, labels=lisbon, ts=now - 500))
    fleet.set_reported("l-1", _reported("downloading", 1, 2, labels=lisbon, ts=now - 300,
                                        deployment="dep-v2"))
    fleet.set_reported("l-1", _reported("failed", 1, 2, labels=lisbon, ts=now - 290,
                                        error="smoke test failed: labels differ",
                                        deployment="dep-v2"))
    fleet.set_reported("l-1", _reported("failed", 1, 2, labels=lisbon, ts=now - 280,
                                        error="smoke test failed: labels differ",
                                        deployment="dep-v2"))  # a repeat: no new history row
    fleet.set_reported("x-1", _reported("idle", None, ts=now - 400))
    for device, online in (("b-1", True), ("b-2", True), ("o-1", False), ("l-1", True),
                           ("x-1", True)):
        fleet.set_presence(device, online, now - 100)
    fleet.create_deployment("dep-v2", "iris", 2)
    fleet.set_desired(["b-2", "l-1"], "iris", 2, "dep-v2")

    records: list[dict[str, Any]] = []
    for i in range(10):  # b-1: 10 predictions of 1..10 ms, 6 labels (4 right), 1 error
        records.append({"kind": "prediction", "ts": now - 120 + i * 5, "model": "iris",
                        "version": 1, "prediction_id": f"p{i}", "latency_ms": float(i + 1)})
    for i in range(6):
        records.append({"kind": "feedback", "ts": now - 60 + i, "model": "iris", "version": 1,
                        "prediction_id": f"p{i}", "correct": i < 4})
    records.append({"kind": "error", "ts": now - 50, "reason": "invalid_input"})
    records.append({"kind": "metrics", "ts": now - 40, "model": "iris", "version": 1,
                    "summary": window_summary(now - 100, shift=2.0)})
    for seq, r in enumerate(records, start=1):
        r["seq"] = seq
    c.telemetry.store_batch("b-1", TelemetryBatch(1, len(records), records, epoch=5), now)
    quiet = [{"kind": "prediction", "ts": now - 30 - i, "model": "iris", "version": 2,
              "prediction_id": f"q{i}", "latency_ms": 2.0, "seq": i + 1} for i in range(5)]
    quiet.append({"kind": "metrics", "ts": now - 20, "model": "iris", "version": 2,
                  "summary": window_summary(now - 80, seed=3), "seq": 6})
    c.telemetry.store_batch("b-2", TelemetryBatch(1, 6, quiet, epoch=6), now)
    populate_health(c, now)


MIB = 1024 * 1024


def health_window(seq: int, end: float, *, version: int, rss: float, temp: float,
                  session: float, disk_free: float = 6e9) -> dict[str, Any]:
    return {"seq": seq, "kind": "health", "ts": end, "start_ts": end - 60, "samples": 12,
            "agent_started_ts": end - 3600, "uptime_s": 86400.0, "reconnects": 0,
            "mem_total_bytes": 4e9, "disk_total_bytes": 3e10, "throttled": 0,
            "gauges": {"rss_bytes": [rss - MIB, rss, rss + MIB], "cpu_percent": [1.0, 2.0, 5.0],
                       "mem_available_bytes": [2e9, 2.1e9, 2.2e9], "load1": [0.2, 0.3, 0.4],
                       "disk_free_bytes": [disk_free, disk_free, disk_free],
                       "temp_c": [temp - 2, temp - 1, temp], "outbox_backlog": [0, 1, 3],
                       "rtt_ms": [2.0, 3.0, 5.0]},
            "model": "iris", "version": version,
            "cost": {"session_bytes": session, "predictions": 100, "cpu_s": 0.05,
                     "latency_ms": 0.4}}


def populate_health(c: Controller, now: float) -> None:
    """Health windows of two berlin devices over the last hour: b-1 heats up to 84 degC on
    iris:1; b-2 serves iris:2, whose session takes more memory. Stored as the bridge would,
    without telemetry rows (the telemetry counts above stay as they are)."""
    b1 = [health_window(100 + i, now - 3600 + i * 300, version=1, rss=60 * MIB + i * 0.1 * MIB,
                        temp=60.0 + 2 * i, session=4 * MIB) for i in range(12)]
    b2 = [health_window(100 + i, now - 3600 + i * 300, version=2, rss=70 * MIB, temp=55.0,
                        session=9 * MIB) for i in range(12)]
    with c.db.write() as conn:
        c.health_store.store_windows(conn, "b-1", 5, b1, now)
        c.health_store.store_windows(conn, "b-2", 6, b2, now)


@pytest.fixture(scope="module", params=DATABASES)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Fleet]:
    """The known fleet, read-only for the tests that use it (module scope)."""
    with populated_app(tmp_path_factory.mktemp("views"), populate,
                       database_url(request)) as (c, client, now):
        yield Fleet(c, client, now)


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Fleet]:
    """A controller of this test's own (SQLite) with the known fleet, free to be changed."""
    with populated_app(tmp_path, populate) as (c, client, now):
        yield Fleet(c, client, now)
