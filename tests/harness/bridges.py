"""The controller's MQTT bridge on its own, for tests of ingest and presence: an artifact
source with no artifacts (those tests serve no chunks)."""

from __future__ import annotations

from edgewise_wire import Manifest


class NoArtifacts:
    def find_by_sha(self, sha: str) -> Manifest | None:
        return None

    def open_range(self, sha: str, offset: int, length: int) -> bytes:
        raise KeyError(sha)
