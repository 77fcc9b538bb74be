"""The whole path with the real controller: `edgewise controller serve --artifact-store s3://...`
uploads a pushed model to the object store (moto's S3 server), signs desired states whose
manifest names a presigned URL, and a real agent daemon downloads the artifact from the store,
not through the controller. An agent that takes MQTT chunks only (``artifact_http = false``)
gets them from a controller whose local cache was emptied (as on a replica that never saw the
push): it fetches and verifies the object from the store first.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli.client import ControllerClient
from simulator.broker import BrokerProcess
from simulator.demo import start_controller, stop_process
from tests.e2e.update.conftest import Models
from tests.harness.agents import AgentProcess, unique_device_id
from tests.harness.object_store import ACCESS_KEY, REGION, SECRET_KEY, S3Server, s3_server
from tests.harness.waiting import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

BUCKET = "controller-artifacts"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    # boto3's chain in the controller process (inherited environment)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with s3_server() as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


@pytest.mark.parametrize("via", ["url", "mqtt-from-an-empty-cache"])
def test_a_deployed_model_is_fetched_from_the_store(
        broker: BrokerProcess, models: Models, s3: S3Server, tmp_path: Path, via: str) -> None:
    proc, url = start_controller(tmp_path / "controller", broker, extra_args=[
        "--artifact-store", f"s3://{BUCKET}/fleet", "--artifact-store-endpoint", s3.endpoint])
    agent = AgentProcess(tmp_path / "device", unique_device_id("objctl"), broker.address, None,
                         artifact_http=via == "url")
    try:
        client = ControllerClient(url, timeout=10.0)
        version = client.push_version(models.v2.manifest, models.v2.data)["version"]
        sha = models.v2.sha256
        head = s3.client().head_object(Bucket=BUCKET, Key=f"fleet/{sha[:2]}/{sha}")
        assert head["ContentLength"] == len(models.v2.data)
        if via != "url":
            shutil.rmtree(tmp_path / "controller" / "artifacts")
        agent.start()
        wait_for(lambda: any(d["device_id"] == agent.device_id for d in client.devices()), 30,
                 "the device known to the controller")
        client.deploy(models.v2.manifest.model, version, [agent.device_id])

        def active() -> dict[str, object] | None:
            health = agent.health()
            return health if health["active"] and f":{version}" in str(health["active"]) \
                and health["update_state"] in ("idle", "active", "committed") else None

        health = wait_for(active, 60, lambda: f"v{version} active; agent: {agent.health()}")
        stats = health["artifact_url"]
        assert isinstance(stats, dict)
        if via == "url":
            assert stats["url_downloads"] == 1 and stats.get("url_fallbacks", 0) == 0, stats
            assert stats["url_bytes"] == len(models.v2.data), stats
        else:
            assert stats == {}, stats  # chunks over MQTT only
            assert (tmp_path / "controller" / "artifacts" / sha[:2] / sha).read_bytes() == \
                models.v2.data  # the controller filled its cache from the store
    finally:
        agent.kill()
        stop_process(proc)
