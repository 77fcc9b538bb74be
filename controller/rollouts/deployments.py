"""Deployments: a model version set on a list of devices at once, without waves or gates.

The quick path for development and for the retraining hook's canary; operators roll out with
:mod:`controller.rollouts.runner`. A deployment still respects rollouts: it is refused while a
live rollout holds one of its devices (and it takes devices a completed rollout let go of).
A version for one device class skips the devices known to be of another
(:mod:`.device_classes`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from controller.errors import ConflictError, ValidationError
from controller.fleet.store import FleetStore
from controller.models.registry import ModelRegistry
from controller.rollouts.device_classes import skipped_text, skipped_view, split_by_class
from controller.security.desired_signer import DesiredSigner
from edgewise_wire import Desired, ProbationPolicy
from edgewise_wire.errors import TopicError
from edgewise_wire.topics import validate_device_id

log = logging.getLogger("edgewise.controller")

Publish = Callable[[str, Desired], None]
# (device ids, model, version, deployment id): refuses (ConflictError) while a live rollout
# holds one of the devices; completed rollouts let them go
ClaimDevices = Callable[[Sequence[str], str, int, str], Awaitable[None]]


class Deployments:
    def __init__(self, registry: ModelRegistry, fleet: FleetStore, signer: DesiredSigner,
                 claim: ClaimDevices, publish: Publish) -> None:
        self.registry = registry
        self.fleet = fleet
        self.signer = signer
        self._claim = claim
        self._publish = publish

    async def deploy(self, model: str, version: int | None = None,
                     device_ids: list[str] | None = None,
                     probation: ProbationPolicy | None = None) -> dict[str, Any]:
        """Set the desired model of the given devices (default: every known device) and publish
        it, signed; a device running a version not below it gets a signed rollback order too.
        Must run on the event loop that drives the MQTT connection: paho is driven by it alone.

        All or nothing: one invalid device id refuses the whole deployment (ValidationError)
        before anything is stored or published."""
        if device_ids is not None:
            check_device_ids(device_ids)
        manifest = await asyncio.to_thread(self.registry.get_manifest, model, version)
        if device_ids is None:
            device_ids = await asyncio.to_thread(self.fleet.device_ids)
        if not device_ids:
            raise ConflictError("no devices are registered yet: start the agents (or "
                                "`edgewise simulate`) so they connect, then roll out")
        # a version for one device class is not sent to devices known to be of another
        split = split_by_class(device_ids, await asyncio.to_thread(
            self.fleet.device_classes, device_ids), manifest.device_class)
        refusal = split.refusal(f"{manifest.model}:{manifest.version}")
        if refusal is not None:
            raise ConflictError(refusal)
        device_ids = [d for d in device_ids if d not in split.skipped]
        deployment_id = f"dep-{manifest.model}-{manifest.version}-{os.urandom(3).hex()}"
        # signed before anything is recorded: a key that cannot sign must not leave devices
        # with a desired state that was never sent
        reported = await asyncio.to_thread(self.fleet.reported_models, device_ids)
        messages = await asyncio.to_thread(
            self.signer.for_devices, deployment_id, manifest,
            {d: reported.get(d, (None, None))[0] for d in device_ids}, now=time.time(),
            probation=probation, pending={d: r[1] for d, r in reported.items()})
        await asyncio.to_thread(self.fleet.create_deployment, deployment_id, manifest.model,
                                manifest.version, None)
        await self._claim(device_ids, manifest.model, manifest.version, deployment_id)
        await asyncio.to_thread(self.fleet.set_desired, device_ids, manifest.model,
                                manifest.version, deployment_id)
        for device_id, desired in messages:
            self._publish(device_id, desired)
        orders = sum(1 for _, desired in messages if desired.rollback_order is not None)
        log.info("deployment %s: %s:%s to %d devices%s%s", deployment_id, manifest.model,
                 manifest.version, len(device_ids),
                 f" ({orders} with a rollback order)" if orders else "",
                 f"; {skipped_text(split.version_class, split.skipped)}" if split.skipped
                 else "")
        return {"deployment_id": deployment_id, "model": manifest.model,
                "version": manifest.version, "devices": device_ids,
                "device_class": manifest.device_class,
                "skipped": skipped_view(split.version_class, split.skipped)}


def check_device_ids(device_ids: Sequence[str]) -> None:
    """Every id must follow the one device id rule (edgewise_wire.topics); the first that does
    not is named in a one-line ValidationError."""
    for device_id in device_ids:
        try:
            validate_device_id(device_id)
        except TopicError as exc:
            raise ValidationError(str(exc)) from None
