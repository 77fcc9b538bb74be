"""The model registry: verified artifacts plus numbered, immutable manifests.

A manifest is registered only if the artifact bytes match its content address exactly (hash,
size and every chunk hash), because devices trust the manifest to verify what they download.
Version numbers are assigned here, per model name, 1, 2, 3, ...
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from controller.errors import ConflictError, NotFoundError, StorageError, ValidationError
from controller.models.artifact_store import ArtifactBlobs
from controller.storage.db import Database
from controller.storage.tables import model_versions, models
from edgewise_wire import ArtifactRef, Manifest, SchemaError

_REGISTER_ATTEMPTS = 5


class ModelRegistry:
    def __init__(self, db: Database, store: ArtifactBlobs) -> None:
        self.db = db
        self.store = store

    def register(self, manifest: Manifest, artifact: bytes) -> Manifest:
        """Verify ``artifact`` against ``manifest``, store both, and return the manifest with
        its assigned version. Concurrent registrations of one model get distinct versions."""
        _check_manifest(manifest, artifact)
        self.store.put(artifact)
        for attempt in range(_REGISTER_ATTEMPTS):
            try:
                return self._insert_next_version(manifest)
            except exc.IntegrityError as e:
                # Another replica took the same version number first (PostgreSQL); try again.
                if attempt == _REGISTER_ATTEMPTS - 1:
                    raise StorageError(
                        f"could not assign a version to model {manifest.model!r}: {e.orig!r}"
                    ) from e
        raise AssertionError("unreachable")

    def _insert_next_version(self, manifest: Manifest) -> Manifest:
        now = time.time()
        with self.db.write() as conn:
            conn.execute(self.db.insert_ignore(models).values(
                name=manifest.model, task=manifest.task, created_at=now))
            # Row lock on PostgreSQL so concurrent registrations of one model queue here.
            task = conn.execute(sa.select(models.c.task).where(models.c.name == manifest.model)
                                .with_for_update()).scalar_one()
            if task != manifest.task:
                raise ConflictError(f"model {manifest.model!r} is a {task} model; "
                                    f"a {manifest.task} version cannot be added to it")
            latest = conn.execute(sa.select(sa.func.max(model_versions.c.version))
                                  .where(model_versions.c.model == manifest.model)).scalar()
            registered = dataclasses.replace(manifest, version=(latest or 0) + 1)
            conn.execute(model_versions.insert().values(
                model=registered.model,
                version=registered.version,
                sha256=registered.artifact.sha256,
                size=registered.artifact.size,
                format=registered.format,
                manifest_json=json.dumps(registered.to_dict(), sort_keys=True),
                created_at=now,
            ))
        return registered

    def list_models(self) -> list[dict[str, Any]]:
        q = (
            sa.select(models.c.name, models.c.task, models.c.created_at,
                      sa.func.count(model_versions.c.version).label("versions"),
                      sa.func.max(model_versions.c.version).label("latest_version"))
            .select_from(models.outerjoin(model_versions, model_versions.c.model == models.c.name))
            .group_by(models.c.name, models.c.task, models.c.created_at)
            .order_by(models.c.name)
        )
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        q = (sa.select(model_versions.c.model, model_versions.c.version, model_versions.c.sha256,
                       model_versions.c.size, model_versions.c.format, model_versions.c.created_at)
             .where(model_versions.c.model == name)
             .order_by(model_versions.c.version))
        with self.db.read() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
            if not rows and not _model_exists(conn, name):
                raise NotFoundError("model", name)
        return rows

    def get_manifest(self, name: str, version: int | None = None) -> Manifest:
        """The manifest of ``name`` at ``version``, or its latest version if None."""
        q = sa.select(model_versions.c.manifest_json).where(model_versions.c.model == name)
        if version is None:
            q = q.order_by(model_versions.c.version.desc()).limit(1)
        else:
            q = q.where(model_versions.c.version == version)
        with self.db.read() as conn:
            raw = conn.execute(q).scalar()
            if raw is None:
                if version is None or not _model_exists(conn, name):
                    raise NotFoundError("model", name)
                raise NotFoundError("model version", f"{name}:{version}")
        try:
            return Manifest.from_dict(json.loads(raw))
        except (ValueError, SchemaError) as e:
            raise StorageError(f"stored manifest of {name}:{version} is unreadable: {e}") from e

    def open_range(self, sha: str, offset: int, length: int) -> bytes:
        """``length`` bytes of the artifact ``sha`` at ``offset`` (the chunk server's reads)."""
        return self.store.open_range(sha, offset, length)

    def find_by_sha(self, sha: str) -> Manifest | None:
        """The newest manifest whose artifact is ``sha``, or None: lets the chunk server answer
        a device that asks for an artifact by hash alone."""
        q = (sa.select(model_versions.c.model, model_versions.c.version)
             .where(model_versions.c.sha256 == sha)
             .order_by(model_versions.c.created_at.desc(), model_versions.c.version.desc())
             .limit(1))
        with self.db.read() as conn:
            row = conn.execute(q).first()
        return self.get_manifest(row.model, row.version) if row is not None else None

    def artifact(self, sha: str) -> bytes:
        return self.store.get(sha)


def _model_exists(conn: sa.Connection, name: str) -> bool:
    return conn.execute(sa.select(models.c.name).where(models.c.name == name)).first() is not None


def _check_manifest(manifest: Manifest, artifact: bytes) -> None:
    """Refuse anything a device would later refuse, while the operator is still here to fix it."""
    try:
        Manifest.from_dict(manifest.to_dict())
    except SchemaError as e:
        raise ValidationError(f"invalid manifest: {e}") from e
    ref = manifest.artifact
    sha = hashlib.sha256(artifact).hexdigest()
    if sha != ref.sha256:
        raise ValidationError(f"artifact sha256 is {sha}, manifest says {ref.sha256}")
    if len(artifact) != ref.size:
        raise ValidationError(f"artifact size is {len(artifact)} bytes, manifest says {ref.size}")
    if ArtifactRef.describe(artifact, ref.chunk_size) != ref:
        raise ValidationError("manifest chunk hashes do not match the artifact "
                              f"(chunk_size {ref.chunk_size})")
