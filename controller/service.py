"""The controller as a library: registry, fleet, telemetry and the MQTT bridge, wired together.

The REST API and the CLI are thin layers over this class; tests can drive it directly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from controller.alert_store import AlertStore
from controller.artifact_store import ArtifactStore
from controller.bridge import ControllerBridge
from controller.config import ControllerConfig
from controller.db import Database
from controller.desired_signing import DesiredSigner, ensure_signing_key
from controller.errors import ConflictError
from controller.fleet_store import FleetStore
from controller.lease import Lease
from controller.metrics_store import MetricsStore
from controller.monitoring_service import MonitoringService
from controller.registry import ModelRegistry
from controller.rollout_runner import RolloutRunner
from controller.security.signing_keys import SigningKeys
from controller.telemetry_store import TelemetryStore
from edgewise_wire import Manifest, ProbationPolicy

log = logging.getLogger("edgewise.controller")


class Controller:
    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(config.database_url)
        self.db.migrate()
        # -- signed updates (issue 4): every desired state is signed with the active key of
        # {data_dir}/signing-keys (created now if there is none); a rotation applies at once
        self.signer = DesiredSigner(ensure_signing_key(SigningKeys.for_data_dir(config.data_dir)),
                                    config.manifest_ttl_s)
        self.store = ArtifactStore(config.artifacts_path)  # issue 10: may be shared
        self.registry = ModelRegistry(self.db, self.store)
        self.fleet = FleetStore(self.db)
        # -- monitoring (issue 6): metrics windows, alerts, the evaluation loop --
        # -- replicas (issue 10): only the lease holder runs rollouts and judges alerts --
        self.lease = Lease(self.db, lease_s=config.lease_s, renew_s=config.lease_renew_s)
        self.metrics = MetricsStore(self.db)
        self.alerts = AlertStore(self.db, self.metrics)
        self.telemetry = TelemetryStore(self.db, self.metrics)
        self.monitoring = MonitoringService(self)
        self.bridge = ControllerBridge(config.broker, self.fleet, self.telemetry, self.registry,
                                       share_group=config.share_group)
        # -- rollouts (issue 5): waves, gates, abort and revert (controller/rollout_runner.py) --
        self.rollouts = RolloutRunner(
            self.db, self.registry, self.fleet, self.bridge.publish_desired,
            lambda: self.bridge.link.connect_count if self.bridge.link.connected else None,
            metrics=self.metrics, leader=self.lease.current_term, signer=self.signer)

    async def start(self) -> None:
        await self.bridge.start()
        await self.lease.start()  # issue 10
        self.monitoring.start()  # issue 6: alert evaluation loop
        await self.rollouts.start()  # issue 5: the rollout loop
        log.info("controller connected to broker %s, database %s", self.config.broker, self.db)

    async def stop(self) -> None:
        await self.monitoring.stop()  # issue 6
        await self.rollouts.stop()  # issue 5
        await self.lease.stop()  # issue 10: hand the lease over at once
        await self.bridge.stop()
        self.db.dispose()

    def push_model(self, manifest: Manifest, artifact: bytes) -> Manifest:
        return self.registry.register(manifest, artifact)

    async def deploy(self, model: str, version: int | None = None,
                     device_ids: list[str] | None = None,
                     probation: ProbationPolicy | None = None) -> dict[str, Any]:
        """Set the desired model of the given devices (default: every known device) and publish
        it, signed; a device running a version not below it gets a signed rollback order too.
        Must run on the bridge's event loop: paho is driven by that loop alone."""
        manifest = await asyncio.to_thread(self.registry.get_manifest, model, version)
        if device_ids is None:
            device_ids = await asyncio.to_thread(self.fleet.device_ids)
        if not device_ids:
            raise ConflictError("no devices are registered yet: start the agents (or "
                                "`edgewise simulate`) so they connect, then roll out")
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
        # issue 5: refused (409) if a live rollout holds a device; completed rollouts let go
        await self.rollouts.claim_for_deployment(device_ids, manifest.model, manifest.version,
                                                 deployment_id)
        await asyncio.to_thread(self.fleet.set_desired, device_ids, manifest.model,
                                manifest.version, deployment_id)
        for device_id, desired in messages:
            self.bridge.publish_desired(device_id, desired)
        orders = sum(1 for _, desired in messages if desired.rollback_order is not None)
        log.info("deployment %s: %s:%s to %d devices%s", deployment_id, manifest.model,
                 manifest.version, len(device_ids),
                 f" ({orders} with a rollback order)" if orders else "")
        return {"deployment_id": deployment_id, "model": manifest.model,
                "version": manifest.version, "devices": device_ids}
