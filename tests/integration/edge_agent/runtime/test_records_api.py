"""A mixed-type pipeline served on a real agent: records of named fields over the local API,
per-row errors for bad records, and drift measured on a categorical field."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig
from edge_agent.local_api import LocalApi
from edge_agent.runtime import InvalidInput
from edgewise_mqtt.link import BrokerAddress
from simulator.broker import free_port
from tests.harness.tabular import mixed_frame, mixed_pipeline
from tests.harness.telemetry import install_model

pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def served():  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    from converters import convert_one

    frame, labels, _ = mixed_frame()
    model = mixed_pipeline(LogisticRegression(max_iter=500)).fit(frame, labels)
    return convert_one(model, frame, name="mixed", labels=labels), model, frame


async def _with_api(tmp_path: Path, result: Any, body: Any) -> None:
    config = AgentConfig(device_id="pi-records", data_dir=tmp_path / "agent",
                         broker=BrokerAddress("127.0.0.1", free_port()))  # offline
    install_model(config.data_dir, result, version=result.manifest.version)
    agent = EdgeAgent(config)
    await agent.start(wait_connected=False)
    api = LocalApi(agent, port=0)
    await api.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.port}") as client:
            await body(client, agent)
    finally:
        await api.stop()
        await agent.stop()


def _records(frame: Any) -> list[dict[str, Any]]:
    rows = json.loads(frame.to_json(orient="records"))  # NaN becomes null, as a client sends it
    return list(rows)


def test_records_are_served_like_the_source_model_predicts(tmp_path: Path, served: Any) -> None:
    result, model, frame = served
    expected = model.predict(frame).tolist()

    async def body(client: httpx.AsyncClient, agent: EdgeAgent) -> None:
        assert agent.runtime is not None  # the smoke test (rows of mixed values) passed
        objects = await client.post("/v1/predict", json={"records": _records(frame)})
        assert objects.status_code == 200, objects.text
        assert [p["label"] for p in objects.json()["predictions"]] == expected
        rows = _records(frame)
        columns = {name: [row[name] for row in rows] for name in frame.columns}
        by_column = await client.post("/v1/predict", json={"records": columns})
        assert [p["label"] for p in by_column.json()["predictions"]] == expected
        one = await client.post("/v1/predict", json={"records": _records(frame)[1]})
        [prediction] = one.json()["predictions"]
        assert prediction["label"] == expected[1] and len(prediction["scores"]) == 3
        direct = agent.predict(_records(frame)[:3])
        assert [p.label for p in direct] == expected[:3]

    asyncio.run(_with_api(tmp_path, result, body))


def test_bad_records_get_a_precise_error_per_row_and_nothing_crashes(tmp_path: Path,
                                                                     served: Any) -> None:
    result, _, frame = served
    good = _records(frame)[1]

    async def body(client: httpx.AsyncClient, agent: EdgeAgent) -> None:
        bad = [good, {**good, "colour": "purple"}, {k: v for k, v in good.items() if k != "age"},
               {**good, "size": 3}, {**good, "note": None}]
        answer = await client.post("/v1/predict", json={"records": bad})
        assert answer.status_code == 422
        error = answer.json()["error"]
        assert error.startswith("4 of 5 rows do not match the model's input schema")
        for fragment in ("row 1: field 'colour' unseen category 'purple' (seen in training: "
                         "blue, green, red)", "row 2: missing field 'age'",
                         "row 3: field 'size' must be a category (str), got int 3",
                         "row 4: field 'note' must be a string, got null"):
            assert fragment in error
        matrix = await client.post("/v1/predict", json={"features": [[1.0, 2.0, 3.0]]})
        assert matrix.status_code == 422 and "has 3 values, the schema 5 fields" in \
            matrix.json()["error"]
        both = await client.post("/v1/predict", json={"records": [good], "features": [1.0]})
        assert both.status_code == 422
        with pytest.raises(InvalidInput, match="unseen category"):
            agent.predict([{**good, "colour": "teal"}])
        assert (await client.get("/v1/health")).json()["serving"] is True

    asyncio.run(_with_api(tmp_path, result, body))


def test_drift_on_a_categorical_field_is_measured_like_on_a_number(tmp_path: Path,
                                                                   served: Any) -> None:
    result, _, frame = served

    async def body(client: httpx.AsyncClient, agent: EdgeAgent) -> None:
        same = _records(frame)
        shifted = [{**row, "colour": "red"} for row in same]
        await client.post("/v1/predict", json={"records": same})
        window = agent.monitor.window
        assert window is not None
        agent.monitor.drain()
        calm = window.summary(agent._clock())
        await client.post("/v1/predict", json={"records": shifted * 2})
        agent.monitor.drain()
        drifted = window.summary(agent._clock())
        colour = [f for f in drifted["features"] if f["name"] == "colour"][0]
        assert colour["counts"][2] == int(np.sum(frame["colour"] == "red")) + 2 * len(frame)
        calm_psi, drift_psi = (_feature(s, "colour") for s in (calm, drifted))
        # the same rows exactly as in the reference: no drift on any field, imputed ones too
        assert calm["derived"]["drift"]["drifted_features"] == []
        assert calm_psi < 0.01 and drift_psi > 0.2
        assert "colour" in drifted["derived"]["drift"]["drifted_features"]
        assert "age" not in drifted["derived"]["drift"]["drifted_features"]

    asyncio.run(_with_api(tmp_path, result, body))


def _feature(summary: dict[str, Any], name: str) -> float:
    entry = next(f for f in summary["derived"]["drift"]["features"] if f["name"] == name)
    return float(entry["psi"])


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosting_models_in_a_mixed_pipeline_serve_records(tmp_path: Path, library: str) -> None:
    pytest.importorskip(library)
    from converters import convert_one

    if library == "xgboost":
        import xgboost

        final = xgboost.XGBClassifier(n_estimators=10, max_depth=3)
    else:
        import lightgbm

        final = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1)
    frame, labels, _ = mixed_frame()
    frame = frame.drop(columns=["note"])
    model = mixed_pipeline(final, for_trees=True).fit(frame, labels)
    result = convert_one(model, frame, name=library, labels=labels)
    assert result.manifest.parity["label_agreement"] == 1.0
    expected = model.predict(frame).tolist()

    async def body(client: httpx.AsyncClient, agent: EdgeAgent) -> None:
        answer = await client.post("/v1/predict", json={"records": _records(frame)})
        assert answer.status_code == 200, answer.text
        assert [p["label"] for p in answer.json()["predictions"]] == expected

    asyncio.run(_with_api(tmp_path, result, body))


def test_a_catboost_model_serves_rows_of_numbers(tmp_path: Path) -> None:
    catboost = pytest.importorskip("catboost")
    from sklearn.datasets import load_wine

    from converters import convert_one

    X, y = load_wine(return_X_y=True)
    model = catboost.CatBoostClassifier(iterations=20, verbose=0, allow_writing_files=False)
    model.fit(X, y)
    result = convert_one(model, X, name="catboost", labels=y)

    async def body(client: httpx.AsyncClient, agent: EdgeAgent) -> None:
        answer = await client.post("/v1/predict", json={"features": X.tolist()})
        assert answer.status_code == 200, answer.text
        got = answer.json()["predictions"]
        assert [p["label"] for p in got] == model.predict(X).ravel().tolist()
        assert np.abs(np.array([p["scores"] for p in got]) - model.predict_proba(X)).max() < 1e-4
        records = await client.post("/v1/predict", json={"records": [{"a": 1}]})
        assert records.status_code == 422 and "not records of named fields" in \
            records.json()["error"]

    asyncio.run(_with_api(tmp_path, result, body))
