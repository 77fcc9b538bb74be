"""The Open Inference Protocol v2 on a real agent's local API, called by tritonclient (the
standard Triton/KServe HTTP client) over real sockets; answers equal the agent's own /v1 API."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig
from edge_agent.local_api import LocalApi
from edgewise_mqtt.link import BrokerAddress
from simulator.broker import free_port
from tests.harness.telemetry import install_model

triton_http = pytest.importorskip(
    "tritonclient.http", reason="tritonclient[http] is not installed (pip install -e '.[dev]')")


def _serve(tmp_path: Path, result: Any, client_side: Callable[[int], None]) -> None:
    """A real agent and its local API on a loop in this thread; ``client_side(port)`` runs
    in another thread (tritonclient's HTTP client is blocking)."""

    async def main() -> None:
        config = AgentConfig(device_id="pi-v2", data_dir=tmp_path / "agent",
                             broker=BrokerAddress("127.0.0.1", free_port()))
        if result is not None:
            install_model(config.data_dir, result, version=result.manifest.version)
        agent = EdgeAgent(config)
        await agent.start(wait_connected=False)
        api = LocalApi(agent, port=0)
        await api.start()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                client_side(api.port)
            except BaseException as exc:  # handed back to the test
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        try:
            while thread.is_alive():
                await asyncio.sleep(0.01)
        finally:
            thread.join()
            await api.stop()
            await agent.stop()
        if errors:
            raise errors[0]

    asyncio.run(main())


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_gets_what_the_agent_api_gives(tmp_path: Path, iris_artifact: Any,
                                                    binary: bool) -> None:
    result, data = iris_artifact
    rows = data.features[:20].astype(np.float32)

    def client_side(port: int) -> None:
        own = httpx.post(f"http://127.0.0.1:{port}/v1/predict",
                         json={"features": rows.tolist()}).json()["predictions"]
        client = triton_http.InferenceServerClient(url=f"127.0.0.1:{port}")
        try:
            assert client.is_server_live() and client.is_server_ready()
            assert client.is_model_ready("iris") and client.is_model_ready("iris", "0")
            assert not client.is_model_ready("other")
            meta = client.get_model_metadata("iris")
            assert meta["versions"] == ["0"] and meta["platform"] == "onnxruntime_onnx"
            assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
            assert meta["outputs"] == [
                {"name": "label", "datatype": "INT64", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]
            assert client.get_model_metadata("iris", "0") == meta
            tensor = triton_http.InferInput("input", list(rows.shape), "FP32")
            tensor.set_data_from_numpy(rows, binary_data=binary)
            outputs = None if binary else [
                triton_http.InferRequestedOutput("label", binary_data=False),
                triton_http.InferRequestedOutput("probabilities", binary_data=False)]
            answer = client.infer("iris", [tensor], outputs=outputs, request_id="r1")
            assert answer.get_response()["id"] == "r1"
            assert answer.get_response()["model_version"] == "0"
            assert answer.as_numpy("label").tolist() == [p["label"] for p in own]
            np.testing.assert_allclose(answer.as_numpy("probabilities"),
                                       np.array([p["scores"] for p in own]), rtol=1e-6)
            ids = answer.get_response()["parameters"]["prediction_ids"].split(",")
            assert len(ids) == len(rows)
            feedback = httpx.post(f"http://127.0.0.1:{port}/v1/feedback",
                                  json={"prediction_id": ids[0], "label": 0}).json()
            assert feedback == {"known": True}
            versioned = client.infer("iris", [tensor], model_version="0", outputs=outputs)
            assert versioned.as_numpy("label").tolist() == [p["label"] for p in own]
        finally:
            client.close()

    _serve(tmp_path, result, client_side)


def test_wrong_shape_datatype_model_and_version_get_v2_error_bodies(tmp_path: Path,
                                                                    iris_artifact: Any) -> None:
    result, data = iris_artifact
    row = data.features[:2].astype(np.float32)

    def client_side(port: int) -> None:
        base = f"http://127.0.0.1:{port}/v2/models/iris/infer"

        def infer(inputs: list[dict[str, Any]], url: str = base) -> httpx.Response:
            return httpx.post(url, json={"inputs": inputs})

        def tensor(**kw: Any) -> dict[str, Any]:
            return {"name": "input", "shape": [2, 4], "datatype": "FP32",
                    "data": row.flatten().tolist(), **kw}

        cases = [
            (infer([tensor(shape=[2, 3])]), 400, "values do not fill shape [2, 3]"),
            (infer([tensor(shape=[1, 8])]), 400, "does not match the model's [-1, 4]"),
            (infer([tensor(shape=[8])]), 400, "has 1 dimensions, the model takes 2"),
            (infer([tensor(datatype="FP64")]), 400, "datatype 'FP64' does not match the "
                                                    "model's FP32"),
            (infer([tensor(datatype="INT64")]), 400, "does not match the model's FP32"),
            (infer([tensor(data=["a"] * 8)]), 400, "value 'a' is not FP32"),
            (infer([tensor(name="x")]), 400, "do not match the model's inputs ['input']"),
            (infer([]), 400, "needs \"inputs\""),
            (infer([tensor()], url=base.replace("iris", "other")), 404, "not served here"),
            (infer([tensor()], url=base.replace("/infer", "/versions/7/infer")), 404,
             "the active version is 0"),
            (httpx.post(base, content=b"{nope", headers={"Content-Type": "application/json"}),
             400, "not JSON"),
            (httpx.get(base), 405, "use POST"),
            (httpx.get(f"http://127.0.0.1:{port}/v2/nothing"), 404, "no endpoint"),
        ]
        for response, status, fragment in cases:
            assert response.status_code == status, response.text
            assert fragment in response.json()["error"], response.text
        client = triton_http.InferenceServerClient(url=f"127.0.0.1:{port}")
        try:
            bad = triton_http.InferInput("input", [2, 4], "FP64")
            bad.set_data_from_numpy(row.astype(np.float64))
            with pytest.raises(Exception, match="does not match the model's FP32"):
                client.infer("iris", [bad])
        finally:
            client.close()
        # nothing crashed: the agent still answers both APIs
        ok = infer([tensor()])
        assert ok.status_code == 200 and len(ok.json()["outputs"][0]["data"]) == 2
        assert httpx.get(f"http://127.0.0.1:{port}/v1/health").json()["serving"] is True

    _serve(tmp_path, result, client_side)


def test_no_active_model_is_live_but_not_ready(tmp_path: Path) -> None:
    def client_side(port: int) -> None:
        client = triton_http.InferenceServerClient(url=f"127.0.0.1:{port}")
        try:
            assert client.is_server_live() and not client.is_server_ready()
        finally:
            client.close()
        answer = httpx.get(f"http://127.0.0.1:{port}/v2/models/iris")
        assert answer.status_code == 503 and "no active model" in answer.json()["error"]

    _serve(tmp_path, None, client_side)


def test_a_model_with_named_fields_takes_one_tensor_per_field(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    from sklearn.linear_model import LogisticRegression

    from converters import convert_one
    from tests.harness.tabular import mixed_frame, mixed_pipeline

    frame, labels, _ = mixed_frame()
    model = mixed_pipeline(LogisticRegression(max_iter=500)).fit(frame, labels)
    result = convert_one(model, frame, name="mixed", labels=labels)
    rows = json.loads(frame.head(30).to_json(orient="records"))  # NaN becomes null

    def client_side(port: int) -> None:
        own = httpx.post(f"http://127.0.0.1:{port}/v1/predict",
                         json={"records": rows}).json()["predictions"]
        client = triton_http.InferenceServerClient(url=f"127.0.0.1:{port}")
        try:
            meta = client.get_model_metadata("mixed")
            types = {t["name"]: t["datatype"] for t in meta["inputs"]}
            assert set(types) == set(frame.columns) and all(
                t["shape"] == [-1, 1] for t in meta["inputs"])
            tensors = []
            for name in frame.columns:
                column = [row[name] for row in rows]
                t = triton_http.InferInput(name, [len(rows), 1], types[name])
                if types[name] == "BYTES":
                    t.set_data_from_numpy(np.array(column, dtype=object).reshape(-1, 1))
                else:
                    values = [np.nan if v is None else v for v in column]
                    t.set_data_from_numpy(np.array(values, dtype=np.float32 if
                                                   types[name] == "FP32" else np.float64
                                                   ).reshape(-1, 1))
                tensors.append(t)
            answer = client.infer("mixed", tensors)
            assert answer.as_numpy(meta["outputs"][0]["name"]).tolist() == \
                [p["label"] for p in own]
        finally:
            client.close()
        bad = httpx.post(f"http://127.0.0.1:{port}/v2/models/mixed/infer", json={"inputs": [
            {"name": n, "shape": [1, 1], "datatype": "FP32", "data": [1.0]}
            for n in frame.columns]})
        assert bad.status_code == 400 and "datatype" in bad.json()["error"]

    _serve(tmp_path, result, client_side)
