"""The agent bundle registry: one signed-to-be manifest per agent version, its archive in the
artifact store the models use (same content address, same chunk server, same object store).

A version label names exactly one archive: pushing the same bytes again under the same version
is a no-op (a retried upload), other bytes under a taken version are refused (devices compare
versions to decide whether to update, so one label must never mean two agents).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from controller.errors import ConflictError, NotFoundError, StorageError, ValidationError
from controller.models.artifact_store import ArtifactBlobs
from controller.storage.db import Database
from controller.storage.tables import agent_versions
from edgewise_wire.errors import SchemaError
from edgewise_wire.manifest import (
    DEFAULT_CHUNK_SIZE,
    AgentManifest,
    ArtifactRef,
    check_agent_version,
)

# a gzip'd tar is at least a few dozen bytes; anything shorter is a mistake, not an agent
MIN_BUNDLE_BYTES = 64


class AgentBundles:
    def __init__(self, db: Database, store: ArtifactBlobs) -> None:
        self.db = db
        self.store = store

    def register(self, version: str, archive: bytes) -> tuple[AgentManifest, bool]:
        """Store ``archive`` as agent ``version``; returns its manifest and whether it is new."""
        try:
            check_agent_version(version)
        except SchemaError as e:
            raise ValidationError(str(e)) from None
        if len(archive) < MIN_BUNDLE_BYTES:
            raise ValidationError(f"agent bundle of {len(archive)} bytes is too short to be an "
                                  "archive of a prepared agent")
        if not (archive[:2] == b"\x1f\x8b" or archive[257:262] == b"ustar"):
            raise ValidationError("agent bundle is neither a gzip'd nor a plain tar archive")
        manifest = AgentManifest(version, ArtifactRef.describe(archive, DEFAULT_CHUNK_SIZE),
                                 created_at=datetime.now(UTC).isoformat(timespec="seconds"))
        try:
            AgentManifest.from_dict(manifest.to_dict())
        except SchemaError as e:
            raise ValidationError(f"invalid agent manifest: {e}") from None
        existing = self._find(version)
        if existing is not None:
            if existing.artifact.sha256 == manifest.artifact.sha256:
                self.store.put(archive)  # a damaged stored copy is replaced
                return existing, False
            raise ConflictError(f"agent version {version!r} is already registered with sha256 "
                                f"{existing.artifact.sha256[:12]}; push under a new version")
        self.store.put(archive)
        try:
            with self.db.write() as conn:
                conn.execute(agent_versions.insert().values(
                    version=version, sha256=manifest.artifact.sha256,
                    size=manifest.artifact.size,
                    manifest_json=json.dumps(manifest.to_dict(), sort_keys=True),
                    created_at=time.time()))
        except exc.IntegrityError:
            raced = self._find(version)  # another replica registered it first
            if raced is not None and raced.artifact.sha256 == manifest.artifact.sha256:
                return raced, False
            raise ConflictError(f"agent version {version!r} was registered meanwhile with "
                                "other bytes") from None
        return manifest, True

    def list_versions(self) -> list[dict[str, Any]]:
        q = (sa.select(agent_versions.c.version, agent_versions.c.sha256,
                       agent_versions.c.size, agent_versions.c.created_at)
             .order_by(agent_versions.c.created_at, agent_versions.c.version))
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def get(self, version: str) -> AgentManifest:
        found = self._find(version)
        if found is None:
            raise NotFoundError("agent version", version)
        return found

    def find_by_sha(self, sha: str) -> AgentManifest | None:
        q = (sa.select(agent_versions.c.manifest_json).where(agent_versions.c.sha256 == sha)
             .order_by(agent_versions.c.created_at.desc()).limit(1))
        with self.db.read() as conn:
            raw = conn.execute(q).scalar()
        return _parse(raw, sha) if raw is not None else None

    def _find(self, version: str) -> AgentManifest | None:
        q = sa.select(agent_versions.c.manifest_json).where(agent_versions.c.version == version)
        with self.db.read() as conn:
            raw = conn.execute(q).scalar()
        return _parse(raw, version) if raw is not None else None


def _parse(raw: str, what: str) -> AgentManifest:
    try:
        return AgentManifest.from_dict(json.loads(raw))
    except (ValueError, SchemaError) as e:
        raise StorageError(f"stored agent manifest {what} is unreadable: {e}") from e
