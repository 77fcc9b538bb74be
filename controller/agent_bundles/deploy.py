"""Set the agent version of devices at once: a signed ``desired_agent`` per device, published
retained on its ``agent/desired`` channel for the agent to verify, download and hand to its
launcher. No waves or gates here (see docs/deploy.md: what is built and what is not)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from controller.agent_bundles.registry import AgentBundles
from controller.errors import ConflictError, ValidationError
from controller.security.desired_signer import DesiredSigner
from edgewise_wire import DesiredAgent, TopicError
from edgewise_wire.topics import validate_device_id

Publish = Callable[[str, DesiredAgent], None]


def check_device_ids(device_ids: list[str]) -> list[str]:
    """All of them valid or none taken (one line naming the first bad one)."""
    for device_id in device_ids:
        try:
            validate_device_id(device_id)
        except TopicError as exc:
            raise ValidationError(str(exc)) from None
    return list(dict.fromkeys(device_ids))


class AgentDeployer:
    def __init__(self, bundles: AgentBundles, known_devices: Callable[[], list[str]],
                 signer: DesiredSigner, publish: Publish) -> None:
        self.bundles = bundles
        self.known_devices = known_devices
        self.signer = signer
        self._publish = publish

    async def deploy(self, version: str, device_ids: list[str] | None = None) -> dict[str, Any]:
        """Send agent ``version`` to ``device_ids`` (default: every known device). Must run on
        the event loop that drives the MQTT connection."""
        if device_ids is not None:
            device_ids = check_device_ids(device_ids)
        manifest = await asyncio.to_thread(self.bundles.get, version)
        if device_ids is None:
            device_ids = await asyncio.to_thread(self.known_devices)
        if not device_ids:
            raise ConflictError("no devices to send the agent version to")
        rollout_id = f"agent-{version}-{os.urandom(3).hex()}"
        # signed (and sealed per device) before anything is sent: a key that cannot sign sends
        # nothing
        messages = await asyncio.to_thread(self.signer.agent_desired, manifest, device_ids,
                                           now=time.time(), rollout_id=rollout_id)
        for device_id, message in messages:
            self._publish(device_id, message)
        return {"rollout_id": rollout_id, "version": version, "sha256": manifest.artifact.sha256,
                "devices": device_ids}
