"""Backends for the store tests: an SQLite file per test, and a PostgreSQL database per module.

PostgreSQL cases are marked ``postgres``. If the server is unreachable they skip with the
reason, except when ``CI`` is set: there a missing server is a failure, not a quiet skip.
Override the server with ``EDGEWISE_PG_ADMIN_URL``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from controller.models.artifact_store import ArtifactStore
from controller.models.registry import ModelRegistry
from controller.storage import migrator
from controller.storage.db import Database
from controller.storage.tables import metadata
from edgewise_wire import ArtifactRef, Manifest, SmokeTest, TensorSpec

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database; tests in a module share the PostgreSQL one, emptied after each."""
    if request.param == "sqlite":
        yield str(tmp_path / "edgewise.db")
        return
    url: str = request.getfixturevalue("pg_module_url")
    yield url
    engine = sa.create_engine(url)
    try:
        metadata.drop_all(engine)
        with engine.begin() as conn:  # and the revision it recorded
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    finally:
        engine.dispose()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    migrator.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def registry(db: Database, store: ArtifactStore) -> ModelRegistry:
    return ModelRegistry(db, store)


@pytest.fixture
def make_manifest() -> Callable[..., Manifest]:
    return build_manifest


def build_manifest(artifact: bytes, model: str = "iris", task: str = "classification",
                   chunk_size: int = 1024) -> Manifest:
    """A small but complete manifest, built by hand so these tests need no converter."""
    return Manifest(
        model=model,
        version=0,
        format="onnx",
        task=task,
        inputs=(TensorSpec("input", "float32", (None, 2)),),
        outputs=(TensorSpec("label", "int64", (None,)),
                 TensorSpec("probabilities", "float32", (None, 2))),
        label_output="label",
        score_output="probabilities",
        class_labels=(0, 1),
        feature_names=("a", "b"),
        artifact=ArtifactRef.describe(artifact, chunk_size),
        smoke_tests=(SmokeTest([[0.0, 1.0]], [1], [[0.2, 0.8]]),),
        smoke_tolerance=1e-4,
        source={"framework": "test"},
        created_at="2024-01-01T00:00:00Z",
    )
