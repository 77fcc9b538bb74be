"""The content-addressed artifact store (file system only: no database backend)."""

from __future__ import annotations

import hashlib
import os

import pytest

from controller.errors import NotFoundError, ValidationError
from controller.models.artifact_store import ArtifactStore

DATA = bytes(range(256)) * 40  # 10240 bytes


def test_round_trip_and_layout(store: ArtifactStore) -> None:
    sha = store.put(DATA)
    assert sha == hashlib.sha256(DATA).hexdigest()
    assert store.path(sha) == store.root / sha[:2] / sha
    assert store.exists(sha) and store.get(sha) == DATA and store.size(sha) == len(DATA)
    assert store.verify(sha)


def test_put_is_idempotent_and_leaves_no_temp_files(store: ArtifactStore) -> None:
    assert store.put(DATA) == store.put(DATA)
    files = [p for p in store.root.rglob("*") if p.is_file()]
    assert [p.name for p in files] == [hashlib.sha256(DATA).hexdigest()]


def test_range_reads(store: ArtifactStore) -> None:
    sha = store.put(DATA)
    assert store.open_range(sha, 0, 100) == DATA[:100]
    assert store.open_range(sha, 1000, 1024) == DATA[1000:2024]
    assert store.open_range(sha, len(DATA) - 10, 100) == DATA[-10:]
    assert store.open_range(sha, len(DATA) + 5, 10) == b""
    with pytest.raises(ValidationError):
        store.open_range(sha, -1, 10)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ab" * 31, "AB" * 32, "g" * 64, ""])
def test_bad_sha_rejected(store: ArtifactStore, bad: str) -> None:
    for call in (store.get, store.exists, store.verify, store.path):
        with pytest.raises(ValidationError):
            call(bad)


def test_missing_artifact(store: ArtifactStore) -> None:
    sha = "0" * 64
    assert not store.exists(sha)
    for call in (store.get, store.verify, store.size):
        with pytest.raises(NotFoundError):
            call(sha)
    with pytest.raises(NotFoundError):
        store.open_range(sha, 0, 1)


def test_verify_detects_and_put_repairs_corruption(store: ArtifactStore) -> None:
    sha = store.put(DATA)
    path = store.path(sha)
    os.chmod(path, 0o644)
    path.write_bytes(b"x" * len(DATA))
    assert not store.verify(sha)
    store.put(DATA)
    assert store.verify(sha)
