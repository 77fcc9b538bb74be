"""A signing test controller: the bad-input FakeController, publishing signed desired states."""

from __future__ import annotations

import time
from dataclasses import dataclass

from edge_agent.protocol import Desired, Manifest, ProbationPolicy, encode
from edge_agent.protocol.topics import DeviceChannel
from edge_agent.trust import generate_keypair, sign_manifest, sign_rollback_order
from tests.bad_input.support import FakeController


@dataclass(frozen=True)
class SigningKey:
    private_pem: bytes
    public_pem: bytes
    key_id: str

    @classmethod
    def new(cls) -> SigningKey:
        return cls(*generate_keypair())


async def publish_signed(ctl: FakeController, key: SigningKey, manifest: Manifest | None, *,
                         deployment_id: str, rollback_to: int | None = None,
                         probation: ProbationPolicy | None = None,
                         expires_in: float = 3600.0) -> None:
    """What the controller publishes: the manifest in a signed envelope, plus a signed rollback
    order addressed to this device when ``rollback_to`` is given."""
    now = time.time()
    envelope = (sign_manifest(manifest.to_dict(), key.private_pem, expires_at=now + expires_in)
                if manifest is not None else None)
    order = None
    if rollback_to is not None:
        model = manifest.model if manifest is not None else "iris"
        order = sign_rollback_order(key.private_pem, model=model, to_version=rollback_to,
                                    device_id=ctl.device_id, issued_at=now,
                                    expires_at=now + 600)
    desired = Desired(deployment_id, manifest, now, envelope=envelope, rollback_order=order,
                      probation=probation)
    await ctl.publish(ctl.topic(DeviceChannel.DESIRED), encode(desired))
