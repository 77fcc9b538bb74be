"""Every artifact the chunk server may send: model versions and agent bundles share one store,
and a device asking for chunks by sha256 gets them whichever kind the hash belongs to."""

from __future__ import annotations

from controller.agent_bundles.registry import AgentBundles
from controller.models.registry import ModelRegistry
from edgewise_wire.manifest import AgentManifest, Manifest


class ArtifactSources:
    def __init__(self, models: ModelRegistry, agents: AgentBundles) -> None:
        self.models = models
        self.agents = agents

    def find_by_sha(self, sha: str) -> Manifest | AgentManifest | None:
        return self.models.find_by_sha(sha) or self.agents.find_by_sha(sha)

    def open_range(self, sha: str, offset: int, length: int) -> bytes:
        return self.models.open_range(sha, offset, length)
