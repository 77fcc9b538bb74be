"""The agent bundle registry on both backends: one archive per version label, in the models'
artifact store, found by hash for the chunk server."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from controller.agent_bundles.registry import AgentBundles
from controller.app.artifact_sources import ArtifactSources
from controller.errors import ConflictError, NotFoundError, ValidationError
from controller.models.artifact_store import ArtifactStore
from controller.models.registry import ModelRegistry
from controller.storage.db import Database
from edgewise_wire.manifest import AgentManifest


def bundle(script: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("bin/edgewise-agent")
        data = script.encode()
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


V1 = bundle("#!/bin/sh\necho v1\n")
V2 = bundle("#!/bin/sh\necho v2\n")


@pytest.fixture
def bundles(db: Database, store: ArtifactStore) -> AgentBundles:
    return AgentBundles(db, store)


def test_push_stores_the_archive_and_its_manifest(bundles: AgentBundles,
                                                  store: ArtifactStore) -> None:
    manifest, new = bundles.register("0.2.0", V1)
    assert new and manifest.version == "0.2.0" and manifest.kind == "agent"
    assert store.get(manifest.artifact.sha256) == V1
    assert AgentManifest.from_dict(manifest.to_dict()) == manifest
    assert bundles.get("0.2.0") == manifest
    assert bundles.find_by_sha(manifest.artifact.sha256) == manifest
    assert bundles.find_by_sha("0" * 64) is None
    assert [(v["version"], v["sha256"]) for v in bundles.list_versions()] == \
        [("0.2.0", manifest.artifact.sha256)]


def test_a_version_names_one_archive(bundles: AgentBundles) -> None:
    first, _ = bundles.register("0.2.0", V1)
    again, new = bundles.register("0.2.0", V1)
    assert again == first and not new
    with pytest.raises(ConflictError, match="already registered"):
        bundles.register("0.2.0", V2)
    assert bundles.register("0.3.0", V2)[1]


@pytest.mark.parametrize("version, data, message", [
    ("../x", V1, "not an agent version"),
    ("", V1, "not an agent version"),
    ("0.2.0", b"x" * 10, "too short"),
    ("0.2.0", b"not an archive at all, just some bytes of text" * 4, "neither"),
], ids=["traversal", "empty", "short", "not-tar"])
def test_bad_pushes_are_refused_before_anything_is_stored(
        bundles: AgentBundles, store: ArtifactStore, version: str, data: bytes,
        message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        bundles.register(version, data)
    assert bundles.list_versions() == []
    with pytest.raises(NotFoundError):
        bundles.get("0.2.0")


def test_the_chunk_server_finds_agent_bundles_beside_models(
        bundles: AgentBundles, registry: ModelRegistry) -> None:
    manifest, _ = bundles.register("0.2.0", V1)
    sources = ArtifactSources(registry, bundles)
    found = sources.find_by_sha(manifest.artifact.sha256)
    assert found is not None and found.artifact == manifest.artifact
    assert sources.open_range(manifest.artifact.sha256, 0, 4) == V1[:4]
