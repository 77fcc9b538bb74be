"""What an agent rollout sends: a signed ``desired_agent`` (the agent bundle's manifest, the
same signing as ``edgewise agent deploy``) per device of a wave, and on an abort the agent
version each moved device ran before. Published retained on each device's ``agent/desired``
channel, after the runner saved the decision, like a model rollout's orders.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

from controller.agent_bundles.registry import AgentBundles
from controller.errors import ConflictError, NotFoundError
from controller.fleet.versions import AgentVersion, Version
from controller.rollouts.store import RolloutRecord
from controller.security.desired_signer import DesiredSigner
from edgewise_wire import DesiredAgent
from edgewise_wire.manifest import AgentManifest

log = logging.getLogger("edgewise.controller.rollouts")

PublishAgent = Callable[[str, DesiredAgent], None]


class AgentOrders:
    def __init__(self, bundles: AgentBundles, publish: PublishAgent,
                 signer: Callable[[], DesiredSigner | None]) -> None:
        self.bundles = bundles
        self.publish = publish
        self._signer = signer

    async def manifest(self, version: str) -> AgentManifest:
        """The registered bundle of ``version`` (NotFoundError if none)."""
        return await asyncio.to_thread(self.bundles.get, version)

    def check_can_sign(self) -> None:
        if self._signer() is None:
            raise ConflictError("agent rollouts need the controller's signing key: agents take "
                                "only signed agent bundles")

    async def wave(self, record: RolloutRecord,
                   devices: Sequence[str]) -> list[tuple[str, DesiredAgent]]:
        """The rollout's agent version, signed once and sealed per device, for each of
        ``devices``."""
        return await self._signed(await self.manifest(record.spec.agent_version), devices,
                                  record.deployment_id)

    async def reverts(self, record: RolloutRecord, revert: Mapping[str, Version | None]
                      ) -> tuple[list[tuple[str, DesiredAgent]], list[str]]:
        """Each moved device's previous agent version, signed; the devices whose previous
        version is unknown (it reported none) or not registered cannot be sent back (a device
        whose launcher restored the old agent is back on it without an order)."""
        groups: dict[str, list[str]] = defaultdict(list)
        missing: list[str] = []
        for device, previous in sorted(revert.items()):
            if isinstance(previous, AgentVersion) and previous.version:
                if previous.version != record.spec.agent_version:
                    groups[previous.version].append(device)
            else:
                missing.append(device)
        messages: list[tuple[str, DesiredAgent]] = []
        for version, devices in groups.items():
            try:
                manifest = await self.manifest(version)
            except NotFoundError:
                missing += devices
                log.error("rollout %s: cannot send %d devices back to agent %s: it is not "
                          "registered (edgewise agent push)", record.label, len(devices), version)
                continue
            messages += await self._signed(manifest, devices, record.revert_deployment_id)
        return messages, sorted(missing)

    def send(self, messages: Sequence[tuple[str, DesiredAgent]]) -> None:
        for device, message in messages:
            self.publish(device, message)

    async def _signed(self, manifest: AgentManifest, devices: Sequence[str],
                      rollout_id: str) -> list[tuple[str, DesiredAgent]]:
        signer = self._signer()
        if signer is None:
            raise ConflictError("agent rollouts need the controller's signing key")
        # the wall clock: devices judge the envelope's expiry by theirs; each device's seal
        # takes its next counter, so an order sent again (a reconnect) supersedes the last
        return await asyncio.to_thread(signer.agent_desired, manifest, devices, now=time.time(),
                                       rollout_id=rollout_id)
