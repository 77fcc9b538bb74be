"""The agent bundle's manifest kind and its signed envelope: neither a model manifest nor a
signed model envelope can be taken for an agent bundle, nor the other way round."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller.security.signing import generate_keypair, sign_agent_manifest, sign_manifest
from edgewise_wire.envelope import (
    BadSignature,
    ExpiredManifest,
    MalformedEnvelope,
    UnknownSigningKey,
    UnsignedManifest,
    WrongDeviceClass,
    verify_agent_envelope,
    verify_envelope,
)
from edgewise_wire.errors import SchemaError
from edgewise_wire.manifest import (
    AgentManifest,
    ArtifactRef,
    Manifest,
    check_agent_version,
    manifest_kind,
)
from tests.unit.edgewise_wire.test_envelope import _manifest as model_manifest

NOW = 1_750_000_000.0
LATER = NOW + 3600


def agent_manifest(version: str = "0.2.0") -> dict[str, Any]:
    return AgentManifest(version, ArtifactRef.describe(b"agent-bundle" * 300, 1024),
                         created_at="2026-12-07T15:00:00+00:00").to_dict()


@pytest.fixture(scope="module")
def key() -> tuple[bytes, bytes, str]:
    return generate_keypair()


def trusted(key: tuple[bytes, bytes, str]) -> dict[str, bytes]:
    return {key[2]: key[1]}


def test_an_agent_manifest_round_trips() -> None:
    d = agent_manifest()
    parsed = AgentManifest.from_dict(d)
    assert parsed.to_dict() == d
    assert parsed.kind == "agent" and manifest_kind(d) == "agent"


def test_a_model_manifest_is_not_an_agent_manifest_and_the_other_way_round() -> None:
    with pytest.raises(SchemaError, match="not an agent manifest"):
        AgentManifest.from_dict(model_manifest())
    with pytest.raises(SchemaError, match="not a model manifest"):
        Manifest.from_dict(agent_manifest())
    assert manifest_kind(model_manifest()) == "model"
    with pytest.raises(SchemaError, match="kind 'firmware'"):
        manifest_kind({"kind": "firmware"})


@pytest.mark.parametrize("version", ["", "../x", "a b", "v1/2", "-1", "x" * 65, "é"],
                         ids=["empty", "traversal", "space", "slash", "dash", "long", "nonascii"])
def test_agent_versions_are_restricted(version: str) -> None:
    with pytest.raises(SchemaError, match="not an agent version"):
        check_agent_version(version)
    with pytest.raises(SchemaError):
        AgentManifest.from_dict({**agent_manifest(), "version": version})


def test_unknown_fields_and_a_bad_artifact_are_refused() -> None:
    with pytest.raises(SchemaError, match="does not know"):
        AgentManifest.from_dict({**agent_manifest(), "format": "onnx"})
    bad = agent_manifest()
    bad["artifact"]["chunk_sha256"] = bad["artifact"]["chunk_sha256"][:-1]
    with pytest.raises(SchemaError, match="chunk_sha256"):
        AgentManifest.from_dict(bad)


def test_a_signed_agent_manifest_verifies(key: tuple[bytes, bytes, str]) -> None:
    env = sign_agent_manifest(agent_manifest(), key[0], expires_at=LATER, device_class="pi4")
    got = verify_agent_envelope(env, trusted(key), now=NOW, device_class="pi4")
    assert AgentManifest.from_dict(got).version == "0.2.0"


def test_tampered_expired_foreign_and_unsigned_agent_envelopes_are_refused(
        key: tuple[bytes, bytes, str]) -> None:
    env = sign_agent_manifest(agent_manifest(), key[0], expires_at=LATER)
    tampered = copy.deepcopy(env)
    tampered["manifest"]["artifact"]["sha256"] = "0" * 64
    with pytest.raises(BadSignature):
        verify_agent_envelope(tampered, trusted(key), now=NOW, device_class=None)
    with pytest.raises(ExpiredManifest):
        verify_agent_envelope(env, trusted(key), now=LATER, device_class=None)
    with pytest.raises(UnknownSigningKey):
        verify_agent_envelope(env, trusted(generate_keypair()), now=NOW, device_class=None)
    with pytest.raises(UnsignedManifest):
        verify_agent_envelope({k: v for k, v in env.items() if k != "signature"},
                              trusted(key), now=NOW, device_class=None)
    with pytest.raises(MalformedEnvelope):
        verify_agent_envelope({**env, "manifest": "x"}, trusted(key), now=NOW, device_class=None)
    classed = sign_agent_manifest(agent_manifest(), key[0], expires_at=LATER, device_class="pi4")
    with pytest.raises(WrongDeviceClass):
        verify_agent_envelope(classed, trusted(key), now=NOW, device_class="jetson")


def test_signatures_do_not_cross_kinds(key: tuple[bytes, bytes, str]) -> None:
    """A signed model manifest replayed as an agent bundle, or an agent bundle's envelope
    presented as a model's, fails the signature: each is signed under its own type."""
    model_env = sign_manifest(model_manifest(), key[0], expires_at=LATER)
    with pytest.raises(BadSignature):
        verify_agent_envelope(model_env, trusted(key), now=NOW, device_class=None)
    agent_env = sign_agent_manifest(agent_manifest(), key[0], expires_at=LATER)
    with pytest.raises((BadSignature, MalformedEnvelope)):
        verify_envelope(agent_env, trusted(key), now=NOW, device_class=None,
                        running_version=None)
