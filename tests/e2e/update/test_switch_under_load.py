"""Predictions in flight while the daemon switches v1 -> v2 are all answered, by v1 or by v2.

Two threads call the daemon's local HTTP API back to back (single rows and batches) while a
signed update is rolled out; every call must answer 200 with one version, and once a thread has
seen v2 it never sees v1 again (the switch is one atomic step, not a flicker).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from simulator.broker import BrokerProcess
from tests.e2e.update.conftest import Models
from tests.harness.agents import (
    AgentProcess,
    Signer,
    check_slots,
    copy_data_dir,
    device,
    same_ref,
    serving_version,
)
from tests.harness.waiting import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(90)]


class Hammer(threading.Thread):
    """Predicts in a loop over one keep-alive connection, recording every answer."""

    def __init__(self, agent: AgentProcess, rows: list[list[float]], batch: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{agent.http_port}"
        self.rows = rows
        self.batch = batch
        self.versions: list[int] = []
        self.errors: list[str] = []
        self.first_v1_id: str | None = None
        self.stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            i = 0
            while not self.stop_event.is_set():
                i += 1
                features = (self.rows[i % len(self.rows)] if self.batch == 1
                            else self.rows[i % 100:i % 100 + self.batch])
                try:
                    response = client.post("/v1/predict", json={"features": features})
                except httpx.HTTPError as exc:
                    self.errors.append(f"request {i}: {type(exc).__name__}: {exc}")
                    continue
                if response.status_code != 200:
                    self.errors.append(f"request {i}: {response.status_code} {response.text}")
                    continue
                predictions = response.json()["predictions"]
                expected_rows = 1 if self.batch == 1 else self.batch
                if len(predictions) != expected_rows:
                    self.errors.append(f"request {i}: {len(predictions)} answers for "
                                       f"{expected_rows} rows")
                versions = {p["version"] for p in predictions}
                if len(versions) != 1:
                    self.errors.append(f"request {i}: one call answered by versions {versions}")
                version = min(versions)
                if version == 1 and self.first_v1_id is None:
                    self.first_v1_id = predictions[0]["prediction_id"]
                self.versions.append(version)

    def count(self, version: int) -> int:
        return self.versions.count(version)


def test_predictions_during_an_update_are_never_dropped(
        broker: BrokerProcess, signer: Signer, models: Models, v1_data_dir: Path,
        tmp_path: Path) -> None:
    with device(tmp_path, broker.address, signer) as (agent, ctl):
        copy_data_dir(v1_data_dir, agent)
        ctl.serve(models.v2)
        agent.start()
        assert serving_version(agent, models.rows[:1]) == 1
        hammers = [Hammer(agent, models.rows, batch=1), Hammer(agent, models.rows, batch=5)]
        for hammer in hammers:
            hammer.start()
        try:
            wait_for(lambda: all(h.count(1) >= 20 for h in hammers), 20, "calls answered by v1")
            since = time.monotonic()
            ctl.publish_desired(signer.desired(models.v2, "dep-v2"))
            ctl.wait_reported(lambda r: r.state == "active" and same_ref(r.active, models.v2),
                              30, "v2 active", since=since)
            wait_for(lambda: all(h.count(2) >= 20 for h in hammers), 20, "calls answered by v2")
        finally:
            for hammer in hammers:
                hammer.stop_event.set()
            for hammer in hammers:
                hammer.join(15)
        for hammer in hammers:
            assert hammer.errors == [], hammer.errors[:5]
            assert set(hammer.versions) == {1, 2}
            switched_at = hammer.versions.index(2)
            assert 1 not in hammer.versions[switched_at:], (
                "a thread saw v1 again after v2 had answered: the switch is not atomic")
        assert check_slots(agent.data_dir).active == models.v2.ref
        # feedback on a prediction v1 made before the switch is still known after it
        first_id = hammers[0].first_v1_id
        assert first_id is not None
        feedback = agent.http.post("/v1/feedback", json={"prediction_id": first_id, "label": 0})
        assert feedback.status_code == 200 and feedback.json() == {"known": True}
