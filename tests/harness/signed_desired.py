"""Publishing signed desired states to an in-process agent: the bad-input FakeController, with
the signing key of tests/update_e2e (``Signer``)."""

from __future__ import annotations

from edgewise_wire import Desired, Manifest, ProbationPolicy, encode
from edgewise_wire.topics import DeviceChannel
from tests.harness.agents import Signer
from tests.harness.fake_controller import FakeController


async def publish_signed(ctl: FakeController, key: Signer, manifest: Manifest | None, *,
                         deployment_id: str, rollback_to: int | None = None,
                         probation: ProbationPolicy | None = None,
                         expires_in: float = 3600.0) -> None:
    """What the controller publishes: the manifest in a signed envelope, plus a signed rollback
    order addressed to this device when ``rollback_to`` is given."""
    envelope = key.envelope(manifest, expires_in=expires_in) if manifest is not None else None
    order = None
    if rollback_to is not None:
        model = manifest.model if manifest is not None else "iris"
        order = key.rollback_order(ctl.device_id, model, rollback_to)
    desired = Desired(deployment_id, manifest, envelope=envelope, rollback_order=order,
                      probation=probation)
    await ctl.publish(ctl.topic(DeviceChannel.DESIRED), encode(desired))
