"""The controller's object-store backend against a real S3 HTTP API (moto's server).

Replicas share the bucket and nothing else: one uploads, another with an empty cache serves the
same bytes; an object damaged in the bucket is refused by a replica that must fetch it (never
cached, never served as MQTT chunks); the presigned URL a device gets answers range requests,
and the agent's HTTP fetcher assembles a verified artifact from it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.errors import NotFoundError, StorageError, ValidationError
from controller.models.artifact_store import ArtifactStore
from controller.models.object_store import ObjectArtifactStore, StoreLocation
from controller.security.desired_signer import DesiredSigner
from controller.security.signing import generate_keypair
from edge_agent.download import ArtifactDownload
from edge_agent.http_fetch import HttpOutcome, HttpStats, fetch_over_http
from edgewise_wire import ArtifactRef, Desired, decode, encode
from tests.harness.object_store import CountingProxy, S3Server, s3_server
from tests.integration.controller.store.conftest import build_manifest

BUCKET = "edgewise-artifacts"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


def store(s3: S3Server, cache_dir: Path, prefix: str = "fleet-a") -> ObjectArtifactStore:
    return ObjectArtifactStore(StoreLocation.parse(f"s3://{BUCKET}/{prefix}"), s3.client(),
                               ArtifactStore(cache_dir), presign_s=3600)


def test_replicas_share_the_bucket_and_not_a_file_system(s3: S3Server, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    one, two = store(s3, tmp_path / "one"), store(s3, tmp_path / "two")
    sha = one.put(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert not two.cache.exists(sha) and two.exists(sha)
    assert two.open_range(sha, 1000, 10) == data[1000:1010]  # fetched, verified, cached
    assert two.cache.exists(sha) and two.get(sha) == data and two.verify(sha)
    missing = "0" * 64
    assert not two.exists(missing)
    with pytest.raises(NotFoundError):
        two.get(missing)


def test_a_damaged_object_is_refused_by_a_replica_that_fetches_it(
        s3: S3Server, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    one = store(s3, tmp_path / "one")
    sha = one.put(data)
    s3.client().put_object(Bucket=BUCKET, Key=one.location.key(sha), Body=data[:-1] + b"!")
    other = store(s3, tmp_path / "other")
    with pytest.raises(StorageError, match="is not the artifact it is named after"):
        other.open_range(sha, 0, 1024)
    assert not other.cache.exists(sha) and not other.verify(sha)
    assert one.open_range(sha, 0, 10) == data[:10]  # the uploader's verified cache still serves
    one.put(data)  # an upload again repairs the object
    assert other.open_range(sha, 0, 10) == data[:10]


@pytest.mark.parametrize("bad", ["s3:/x", "http://bucket/p", "s3://B/p", "s3://ok-bucket/a//b",
                                 "s3://ok-bucket/../x"])
def test_store_locations_are_checked(bad: str) -> None:
    with pytest.raises(ValidationError):
        StoreLocation.parse(bad)


def test_the_presigned_url_serves_resumable_range_requests(s3: S3Server, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    ref = ArtifactRef.describe(data, 4096)
    proxy = CountingProxy(s3.port).start()
    try:
        # the URL devices get names the proxy, so the test sees every byte served
        one = ObjectArtifactStore(StoreLocation.parse(f"s3://{BUCKET}/via-proxy"),
                                  s3.client(proxy.endpoint), ArtifactStore(tmp_path / "c"),
                                  presign_s=3600)
        sha = one.put(data)
        url = one.url_for(sha)
        assert url is not None and url.startswith(proxy.endpoint) and "X-Amz-Signature" in url
        proxy.ranges.clear()
        served_before = proxy.bytes_served
        proxy.cut_once_after(len(data) // 3)
        download = ArtifactDownload(ref, tmp_path / "dl" / f"{sha}.part")
        stats = HttpStats()
        outcome = fetch_over_http(download, url, cancel=threading.Event(), stats=stats,
                                  retry_delay_s=0.05)
        assert outcome is HttpOutcome.COMPLETE, stats
        assert download.finalize(tmp_path / "artifact").read_bytes() == data
        assert proxy.cuts == 1 and stats.interruptions == 1
        assert proxy.ranges[0] == (0, len(data) - 1)
        resumed_at = proxy.ranges[1][0]
        assert resumed_at > 0 and resumed_at % ref.chunk_size == 0, proxy.ranges
        served = proxy.bytes_served - served_before
        # one copy plus the response headers, not a second copy
        assert len(data) <= served < len(data) + ref.chunk_size + 4096, served
    finally:
        proxy.close()


def test_a_wrong_object_behind_the_url_is_refused_chunk_by_chunk(
        s3: S3Server, tmp_path: Path) -> None:
    good, bad = os.urandom(50_000), os.urandom(50_000)
    ref = ArtifactRef.describe(good, 4096)
    one = store(s3, tmp_path / "c", prefix="tamper")
    sha = one.put(good)
    s3.client().put_object(Bucket=BUCKET, Key=one.location.key(sha), Body=bad)
    url = one.url_for(sha)
    assert url is not None
    download = ArtifactDownload(ref, tmp_path / "dl" / f"{sha}.part")
    outcome = fetch_over_http(download, url, cancel=threading.Event())
    assert outcome is HttpOutcome.TAMPERED
    assert download.received == 0 and download.rejected_chunks == 1


def test_an_unreachable_url_is_given_up_after_a_few_tries(tmp_path: Path) -> None:
    from simulator.broker import free_port

    data = os.urandom(5000)
    ref = ArtifactRef.describe(data, 1024)
    download = ArtifactDownload(ref, tmp_path / "x.part")
    stats = HttpStats()
    outcome = fetch_over_http(download, f"http://127.0.0.1:{free_port()}/b/k",
                              cancel=threading.Event(), retry_delay_s=0.01, stats=stats)
    assert outcome is HttpOutcome.UNREACHABLE and stats.interruptions == 4


def test_the_signed_manifest_names_the_url(s3: S3Server, tmp_path: Path) -> None:
    data = os.urandom(20_000)
    one = store(s3, tmp_path / "c", prefix="signed")
    sha = one.put(data)
    manifest = build_manifest(data)
    assert manifest.artifact.sha256 == sha
    private_pem, _public, _kid = generate_keypair()
    signer = DesiredSigner(lambda: private_pem, locate=one.url_for)
    desired = signer.desired("dep-1", manifest, "dev-1", None, now=1000.0)
    assert desired.envelope is not None
    assert desired.envelope["manifest"]["artifact"]["url"] == desired.manifest.artifact.url
    back = decode(encode(desired), Desired)
    assert back.manifest is not None and back.manifest.artifact.url is not None
    assert back.manifest.artifact.url.startswith(f"{s3.endpoint}/{BUCKET}/signed/")
    assert back.manifest.artifact == manifest.artifact  # the URL is no part of the address
