"""The model registry on both backends."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import pytest

from controller.errors import ConflictError, NotFoundError, ValidationError
from controller.models.registry import ModelRegistry
from edgewise_wire import ArtifactRef, Manifest

ART1 = b"onnx-bytes-v1" * 200  # several 1 KiB chunks
ART2 = b"onnx-bytes-v2" * 200

MakeManifest = Callable[..., Manifest]


def test_versions_increment(registry: ModelRegistry, make_manifest: MakeManifest) -> None:
    m1 = registry.register(make_manifest(ART1), ART1)
    m2 = registry.register(make_manifest(ART2), ART2)
    other = registry.register(make_manifest(ART1, model="other"), ART1)
    assert (m1.version, m2.version, other.version) == (1, 2, 1)
    assert registry.get_manifest("iris") == m2
    assert registry.get_manifest("iris", 1) == m1
    assert registry.artifact(m1.artifact.sha256) == ART1
    assert registry.find_by_sha(m2.artifact.sha256) == m2
    assert registry.find_by_sha("0" * 64) is None
    assert [v["version"] for v in registry.list_versions("iris")] == [1, 2]
    assert registry.list_versions("iris")[1]["sha256"] == m2.artifact.sha256
    summary = {m["name"]: (m["task"], m["versions"], m["latest_version"])
               for m in registry.list_models()}
    assert summary == {"iris": ("classification", 2, 2), "other": ("classification", 1, 1)}


def test_manifest_round_trips(registry: ModelRegistry, make_manifest: MakeManifest) -> None:
    m = registry.register(make_manifest(ART1), ART1)
    assert m == dataclasses.replace(make_manifest(ART1), version=1)
    assert registry.get_manifest("iris", 1).to_dict() == m.to_dict()


def test_concurrent_registrations_get_distinct_versions(
        registry: ModelRegistry, make_manifest: MakeManifest) -> None:
    n = 6
    barrier = threading.Barrier(n)
    versions: list[int] = []
    errors: list[BaseException] = []

    def register(i: int) -> None:
        data = f"artifact-{i}".encode() * 100
        barrier.wait()
        try:
            versions.append(registry.register(make_manifest(data), data).version)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert sorted(versions) == list(range(1, n + 1))


def test_hash_mismatch_rejected(registry: ModelRegistry, make_manifest: MakeManifest) -> None:
    with pytest.raises(ValidationError) as info:
        registry.register(make_manifest(ART1), ART2)
    assert make_manifest(ART1).artifact.sha256 in str(info.value)
    with pytest.raises(NotFoundError):
        registry.get_manifest("iris")


def test_chunk_hash_mismatch_rejected(registry: ModelRegistry, make_manifest: MakeManifest) -> None:
    m = make_manifest(ART1)
    ref = m.artifact
    bad = ArtifactRef(ref.sha256, ref.size, ref.chunk_size, ("0" * 64,) + ref.chunk_sha256[1:])
    with pytest.raises(ValidationError, match="chunk"):
        registry.register(dataclasses.replace(m, artifact=bad), ART1)


def test_invalid_manifest_rejected(registry: ModelRegistry, make_manifest: MakeManifest) -> None:
    with pytest.raises(ValidationError, match="'nope'"):
        registry.register(dataclasses.replace(make_manifest(ART1), label_output="nope"), ART1)


def test_task_change_conflicts(registry: ModelRegistry, make_manifest: MakeManifest) -> None:
    registry.register(make_manifest(ART1), ART1)
    with pytest.raises(ConflictError):
        registry.register(make_manifest(ART2, task="regression"), ART2)


def test_unknown_model_and_version(registry: ModelRegistry, make_manifest: MakeManifest) -> None:
    with pytest.raises(NotFoundError, match="'ghost'"):
        registry.get_manifest("ghost")
    with pytest.raises(NotFoundError):
        registry.list_versions("ghost")
    registry.register(make_manifest(ART1), ART1)
    with pytest.raises(NotFoundError, match="iris:7"):
        registry.get_manifest("iris", 7)
    with pytest.raises(NotFoundError):
        registry.artifact("f" * 64)
