"""The local HTTP API of the daemon process, configured from its TOML file, in enforce mode.

tests/integration/edge_agent/runtime/test_local_api.py covers the API in process (every error code); this checks
the same contract end to end: no model yet (503), a signed rollout, then predict one row and a
batch, feedback, refusals of malformed input with a 4xx that says what is wrong, and health.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.broker import BrokerProcess
from tests.e2e.update.conftest import Models
from tests.harness.agents import Signer, device, same_ref

pytestmark = [pytest.mark.broker, pytest.mark.timeout(60)]


def test_daemon_local_api_predict_feedback_health_and_errors(
        broker: BrokerProcess, signer: Signer, models: Models, tmp_path: Path) -> None:
    with device(tmp_path, broker.address, signer) as (agent, ctl):
        agent.start()
        health = agent.health()
        assert health["serving"] is False and health["active"] is None
        assert health["trust"].startswith("enforcing"), health
        none = agent.predict(models.rows[0])
        assert none.status_code == 503 and "no active model" in none.json()["error"]

        ctl.serve(models.v1)
        ctl.publish_desired(signer.desired(models.v1, "dep-v1"))
        ctl.wait_reported(lambda r: r.state == "active" and same_ref(r.active, models.v1), 20,
                          "v1 active")

        one = agent.predict_ok(models.rows[0])
        assert len(one) == 1
        assert (one[0]["model"], one[0]["version"]) == ("iris", 1)
        assert one[0]["label"] == 0 and len(one[0]["scores"]) == 3  # iris row 0 is a setosa
        batch = agent.predict_ok(models.rows[48:53])
        assert [p["label"] for p in batch] == [0, 0, 1, 1, 1]
        assert len({p["prediction_id"] for p in batch + one}) == 6

        known = agent.http.post("/v1/feedback",
                                json={"prediction_id": batch[2]["prediction_id"], "label": 1})
        assert known.status_code == 200 and known.json() == {"known": True}
        unknown = agent.http.post("/v1/feedback", json={"prediction_id": "nope", "label": 1})
        assert unknown.status_code == 200 and unknown.json() == {"known": False}

        refusals = [
            (agent.predict([1.0, 2.0]), 422, "expects 4 features"),
            (agent.predict([[1, 2, 3, "x"]]), 422, "must be numbers"),
            (agent.predict([]), 422, ""),
            (agent.http.post("/v1/predict", json={"rows": models.rows[0]}), 422, '"features"'),
            (agent.http.post("/v1/predict", content=b"{not json"), 400, "not JSON"),
            (agent.http.post("/v1/feedback", json={"label": 1}), 422, "prediction_id"),
            (agent.http.get("/v1/predict"), 405, "POST"),
            (agent.http.get("/v1/models"), 404, "/v1/predict"),
        ]
        for response, status, words in refusals:
            assert response.status_code == status, (response.request.url, response.text)
            error = response.json()["error"]
            assert error and words in error, error

        health = agent.health()
        assert health["serving"] is True and health["active"] == "iris:1"
        assert health["state"] == "active" and health["predictions_served"] == 6
        assert health["rejected_desired"] == 0
        assert agent.alive
