"""The agent's localhost HTTP API, on a real agent with a real ONNX model, over real sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig
from edge_agent.local_api import LocalApi
from edgewise_mqtt.link import BrokerAddress
from simulator.broker import free_port
from tests.harness.telemetry import install_model


async def _with_api(tmp_path: Path, result, body) -> None:  # type: ignore[no-untyped-def]
    config = AgentConfig(device_id="pi-http", data_dir=tmp_path / "agent",
                         broker=BrokerAddress("127.0.0.1", free_port()))  # no broker: offline
    if result is not None:
        install_model(config.data_dir, result, version=result.manifest.version)
    agent = EdgeAgent(config)
    await agent.start(wait_connected=False)
    api = LocalApi(agent, port=0)
    await api.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.port}") as client:
            await body(client, api, agent)
    finally:
        await api.stop()
        await agent.stop()


def test_predict_feedback_and_health(tmp_path: Path, iris_artifact) -> None:  # type: ignore[no-untyped-def]
    result, data = iris_artifact

    async def body(client: httpx.AsyncClient, api: LocalApi, agent: EdgeAgent) -> None:
        one = await client.post("/v1/predict", json={"features": data.features[0].tolist()})
        assert one.status_code == 200, one.text
        [prediction] = one.json()["predictions"]
        assert prediction["label"] == int(data.target[0]) and prediction["model"] == "iris"
        assert len(prediction["scores"]) == 3
        batch = await client.post("/v1/predict", json={"features": data.features[:50].tolist()})
        assert len(batch.json()["predictions"]) == 50
        fb = await client.post("/v1/feedback", json={"prediction_id": prediction["prediction_id"],
                                                     "label": 0})
        assert fb.json() == {"known": True}
        unknown = await client.post("/v1/feedback", json={"prediction_id": "nope", "label": 0})
        assert unknown.json() == {"known": False}
        health = (await client.get("/v1/health")).json()
        assert health["serving"] is True and health["active"] == "iris:0"
        assert health["predictions_served"] == 51

    asyncio.run(_with_api(tmp_path, result, body))


@pytest.mark.parametrize("request_kwargs, status, fragment", [
    ({"json": {"features": [1.0, 2.0]}}, 422, "expects 4 features"),
    ({"json": {"features": [[1, 2, 3, "x"]]}}, 422, "must be numbers"),
    ({"content": b'{"features": [NaN, 1, 2, 3]}'}, 422, "NaN"),
    ({"json": {"rows": [1, 2, 3, 4]}}, 422, '"features"'),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not JSON"),
])
def test_bad_predict_requests_get_clear_errors(tmp_path: Path, iris_artifact, request_kwargs,
                                               status: int, fragment: str) -> None:  # type: ignore[no-untyped-def]
    result, _ = iris_artifact

    async def body(client: httpx.AsyncClient, api: LocalApi, agent: EdgeAgent) -> None:
        response = await client.post("/v1/predict", **request_kwargs)
        assert response.status_code == status
        assert fragment in response.json()["error"]
        ok = await client.get("/v1/health")  # the server is still there
        assert ok.status_code == 200

    asyncio.run(_with_api(tmp_path, result, body))


def test_routing_errors_and_no_model(tmp_path: Path) -> None:
    async def body(client: httpx.AsyncClient, api: LocalApi, agent: EdgeAgent) -> None:
        none = await client.post("/v1/predict", json={"features": [1, 2, 3, 4]})
        assert none.status_code == 503 and "no active model" in none.json()["error"]
        assert (await client.get("/v1/predict")).status_code == 405
        assert (await client.get("/v2/anything")).status_code == 404
        nan_label = await client.post("/v1/feedback", content=b'{"prediction_id": "x", "label": 1e999}')
        assert nan_label.status_code == 422
        # a body over the bound is refused from its Content-Length, before it is read
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        writer.write(b"POST /v1/predict HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readline(), 5)
        assert head.startswith(b"HTTP/1.1 413")
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        writer.write(b"POST /v1/predict HTTP/1.1\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 411")
        writer.close()

    asyncio.run(_with_api(tmp_path, None, body))
