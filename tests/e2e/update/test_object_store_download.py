"""The real ``edgewise-agent`` daemon downloads an update from the URL its signed manifest names
(an S3-compatible store: moto's server, see tests/harness/object_store.py), with MQTT chunks as
the fallback.

* through the URL: no chunk goes over MQTT; a connection cut mid-body resumes at the first
  missing chunk, so the store serves about one copy (counted by a proxy in front of it);
* an object in the bucket that is not the signed artifact: refused at its first chunk, never
  activated; the agent takes the chunks over MQTT and activates the signed artifact;
* a URL nothing answers: the agent gives up on it after a few tries and uses MQTT.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.broker import BrokerProcess, free_port
from tests.e2e.update.conftest import Models
from tests.harness.agents import (
    Artifact,
    Signer,
    copy_data_dir,
    device,
    same_ref,
    serving_version,
)
from tests.harness.object_store import CountingProxy, S3Server, s3_server

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

BUCKET = "fleet"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


def upload(s3: S3Server, artifact: Artifact, body: bytes | None = None) -> str:
    key = f"models/{artifact.sha256[:2]}/{artifact.sha256}"
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=artifact.data if body is None else body)
    return key


def located(artifact: Artifact, url: str) -> Artifact:
    ref = dataclasses.replace(artifact.manifest.artifact, url=url)
    return Artifact(dataclasses.replace(artifact.manifest, artifact=ref), artifact.data)


def presigned(s3: S3Server, key: str, endpoint: str | None = None) -> str:
    return str(s3.client(endpoint).generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=3600))


def test_download_from_the_url_resumes_after_a_cut_and_uses_no_mqtt_chunk(
        broker: BrokerProcess, signer: Signer, models: Models, v1_data_dir: Path,
        tmp_path: Path, s3: S3Server) -> None:
    proxy = CountingProxy(s3.port).start()
    try:
        artifact = located(models.v2, presigned(s3, upload(s3, models.v2), proxy.endpoint))
        size = artifact.manifest.artifact.size
        proxy.cut_once_after(size // 2)
        with device(tmp_path, broker.address, signer) as (agent, ctl):
            copy_data_dir(v1_data_dir, agent)
            ctl.serve(artifact)
            ctl.publish_desired(signer.desired(artifact, "dep-url"))
            agent.start()
            ctl.wait_reported(lambda r: r.state == "active" and same_ref(r.active, artifact), 40,
                              "v2 active, downloaded from the store")
            assert serving_version(agent, models.rows[:2]) == 2
            assert sum(ctl.served(artifact.sha256).values()) == 0, "chunks went over MQTT"
            stats = agent.health()["artifact_url"]
            assert stats.get("url_fallbacks", 0) == 0 and stats["url_interruptions"] == 1, stats
        chunk = artifact.manifest.artifact.chunk_size
        assert proxy.cuts == 1 and proxy.ranges[0] == (0, size - 1), proxy.ranges
        assert len(proxy.ranges) == 2 and proxy.ranges[1][0] > 0 and \
            proxy.ranges[1][0] % chunk == 0, proxy.ranges
        # one copy and the headers of two responses, not a second copy
        assert size <= proxy.bytes_served < size + chunk + 4096, (proxy.bytes_served, size)
    finally:
        proxy.close()


def test_a_tampered_object_is_never_activated_and_mqtt_chunks_take_over(
        broker: BrokerProcess, signer: Signer, models: Models, v1_data_dir: Path,
        tmp_path: Path, s3: S3Server) -> None:
    # v3's bytes where v2 should be: a real model, just not the signed one
    key = upload(s3, models.v2, body=models.v3.data)
    artifact = located(models.v2, presigned(s3, key))
    with device(tmp_path, broker.address, signer) as (agent, ctl):
        copy_data_dir(v1_data_dir, agent)
        ctl.serve(artifact)
        ctl.publish_desired(signer.desired(artifact, "dep-tampered"))
        agent.start()
        ctl.wait_reported(lambda r: r.state == "active" and same_ref(r.active, artifact), 40,
                          "the signed v2 active after falling back to MQTT")
        assert not any(same_ref(r.active, models.v3) for r in ctl.reports())
        assert sum(ctl.served(artifact.sha256).values()) >= artifact.manifest.artifact.chunk_count
        stats = agent.health()["artifact_url"]
        assert stats["url_tampered"] == 1 and stats["url_fallbacks"] == 1, stats
        assert serving_version(agent, models.rows[:2]) == 2


def test_an_unreachable_url_falls_back_to_mqtt(
        broker: BrokerProcess, signer: Signer, models: Models, v1_data_dir: Path,
        tmp_path: Path) -> None:
    artifact = located(models.v2, f"http://127.0.0.1:{free_port()}/{BUCKET}/nothing-here")
    with device(tmp_path, broker.address, signer) as (agent, ctl):
        copy_data_dir(v1_data_dir, agent)
        ctl.serve(artifact)
        ctl.publish_desired(signer.desired(artifact, "dep-unreachable"))
        agent.start()
        ctl.wait_reported(lambda r: r.state == "active" and same_ref(r.active, artifact), 40,
                          "v2 active over MQTT after the URL failed")
        stats = agent.health()["artifact_url"]
        assert stats["url_unreachable"] == 1 and stats["url_fallbacks"] == 1, stats
