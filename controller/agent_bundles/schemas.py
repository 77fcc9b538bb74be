"""Response models of ``/agent-versions``."""

from __future__ import annotations

from pydantic import BaseModel, Field


class AgentVersionOut(BaseModel):
    version: str
    sha256: str
    size: int = Field(description="archive bytes")
    created_at: float


class PushedAgentVersion(BaseModel):
    version: str
    sha256: str
    size: int = Field(description="archive bytes")
    chunks: int = Field(description="chunks devices download it in")
    new: bool = Field(description="false: these bytes were already registered under this version")
