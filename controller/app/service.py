"""The controller as a library: every feature's stores and services, built once and wired
together. The one place that knows all the features; each of them gets only what it uses.

The REST API (:mod:`controller.app.api`) and the server (:mod:`controller.app.server`) sit on top;
tests can drive this class directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from controller.agent_bundles.deploy import AgentDeployer
from controller.agent_bundles.registry import AgentBundles
from controller.app.artifact_sources import ArtifactSources
from controller.app.lease import Lease, new_holder_id
from controller.app.presence import claim_root, instance_id
from controller.audit.store import AuditLog
from controller.config import ControllerConfig
from controller.data.export import Exporter
from controller.data.export_query import EmptyExport, ExportQuery
from controller.data.export_writers import write as write_export
from controller.device_health.logs import LogsRequester
from controller.device_health.rules import HealthThresholds
from controller.device_health.store import HealthStore
from controller.device_health.views import DeviceHealthViews
from controller.errors import ValidationError
from controller.experiments.service import ExperimentService
from controller.experiments.store import ExperimentStore
from controller.fleet.bridge import ControllerBridge
from controller.fleet.device_registry import DeviceRegistry
from controller.fleet.queries import FleetViews
from controller.fleet.seal_counters import SealCounters
from controller.fleet.store import FleetStore
from controller.fleet.telemetry_store import TelemetryStore
from controller.models.artifact_store import ArtifactStore
from controller.models.object_store import ObjectArtifactStore, StoreLocation, s3_client
from controller.models.queries import ModelViews
from controller.models.registry import ModelRegistry
from controller.monitoring.alert_marks import AlertMarks
from controller.monitoring.alert_store import AlertStore
from controller.monitoring.drift_views import DriftViews
from controller.monitoring.metrics_store import MetricsStore
from controller.monitoring.notifier import AlertNotifier, NotifySettings
from controller.monitoring.retrain_runs import RetrainRuns
from controller.monitoring.service import MonitoringService, MonitoringSettings
from controller.rollouts.deployment_views import DeploymentViews
from controller.rollouts.deployments import Deployments
from controller.rollouts.runner import RolloutRunner
from controller.rollouts.store import LIVE
from controller.sampling.publisher import SamplingPublisher
from controller.sampling.store import SamplingStore
from controller.security.desired_signer import DesiredSigner, ensure_signing_key
from controller.security.key_publisher import KeyUpdatePublisher
from controller.security.signing_keys import SigningKeys
from controller.storage import Database, migrator
from controller.web.health import FleetHealth
from edgewise_wire import ControllerPresence, Manifest, ProbationPolicy

log = logging.getLogger("edgewise.controller")
# how often the leader compares each device's sampling order with its group's share (a rule
# set, a new device or changed labels reach the devices within this)
SAMPLING_RECONCILE_S = 1.0


class Controller:
    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(config.database_url)
        applied = migrator.ensure_current(self.db, config.auto_migrate)
        if applied:
            log.info("database upgraded to revision %s (applied %s)", applied[-1],
                     ", ".join(applied))
        # models: artifact files in a shared directory, or in an object store with each
        # replica's directory as its verified cache (then devices get a URL to fetch from)
        self.store = open_artifact_store(config)
        locate = self.store.url_for if isinstance(self.store, ObjectArtifactStore) else None
        # every desired state is signed with the active key of {data_dir}/signing-keys (created
        # now if there is none; a rotation applies at the next signature) and sealed with the
        # device's next counter (replay protection)
        signing_keys = SigningKeys.for_data_dir(config.data_dir)
        self.signer = DesiredSigner(ensure_signing_key(signing_keys), config.manifest_ttl_s,
                                    locate=locate, counters=SealCounters(self.db).next)
        self.registry = ModelRegistry(self.db, self.store)
        # agent bundles for the devices' launcher: the same store, the same chunk server
        self.agent_bundles = AgentBundles(self.db, self.store)
        # fleet and its telemetry; metrics windows are stored in the telemetry's transaction
        self.fleet = FleetStore(self.db)
        self.devices = DeviceRegistry(self.db, self.fleet)
        self.metrics = MetricsStore(self.db)
        # device health windows, stored in the telemetry's transaction as well
        self.health_store = HealthStore(self.db)
        # experiment windows, in the telemetry's transaction too
        self.experiment_store = ExperimentStore(self.db)
        self.telemetry = TelemetryStore(self.db, self.metrics.store_windows,
                                        self.health_store.store_windows,
                                        self.experiment_store.store_windows)
        # one controller instance (database) per topic root: this one's identity on the broker
        self.instance = instance_id(self.db)
        self.replica = new_holder_id()
        self.bridge = ControllerBridge(config.broker, self.fleet, self.telemetry,
                                       ArtifactSources(self.registry, self.agent_bundles),
                                       share_group=config.share_group, root=config.topic_root,
                                       presence=ControllerPresence(
                                           self.instance, online=True, replica=self.replica,
                                           started_at=time.time()))
        self.agent_deployer = AgentDeployer(self.agent_bundles, self.fleet.device_ids,
                                            self.signer, self.bridge.publish_desired_agent)
        # signing keys over the air: the key update, retained, republished on every change
        self.key_updates = KeyUpdatePublisher(
            signing_keys, lambda topic, payload: self.bridge.link.publish(topic, payload,
                                                                          retain=True),
            lambda: self.bridge.link.connect_count if self.bridge.link.connected else None,
            root=config.topic_root)
        self._key_task: asyncio.Task[None] | None = None
        self.device_logs = LogsRequester(self.bridge.link.publish_threadsafe,
                                         root=config.topic_root)
        self.bridge.logs_handler = self.device_logs.on_reply
        # only the holder of the lease runs rollouts and judges alerts (several replicas)
        self.lease = Lease(self.db, holder=self.replica, lease_s=config.lease_s,
                           renew_s=config.lease_renew_s)
        self.audit = AuditLog(self.db)
        self.rollouts = RolloutRunner(
            self.db, self.registry, self.fleet, self.bridge.publish_desired,
            lambda: self.bridge.link.connect_count if self.bridge.link.connected else None,
            metrics=self.metrics, leader=self.lease.current_term, signer=self.signer,
            devices=self.devices, costs=self.health_store,
            agent_bundles=self.agent_bundles, publish_agent=self.bridge.publish_desired_agent)
        self.deployments = Deployments(self.registry, self.fleet, self.signer,
                                       self.rollouts.claim_for_deployment,
                                       self.bridge.publish_desired)
        # monitoring: alert evaluation, the retraining hook and its canary
        self.alerts = AlertStore(self.db, self.metrics)
        self.retrain_runs = RetrainRuns(self.db)
        self.alert_marks = AlertMarks(self.db, config.alert_group_by)
        self.notifier = AlertNotifier(self.alert_marks, NotifySettings(
            alertmanager_url=config.alertmanager_url, webhook_url=config.alert_webhook_url,
            webhook_secret=config.alert_webhook_secret, queue_size=config.alert_notify_queue,
            resend_s=config.alert_resend_s,
            generator_url=f"http://{config.http_host}:{config.http_port}/"),
            is_leader=lambda: self.lease.held)
        self.monitoring = MonitoringService(
            self.alerts, self.retrain_runs, MonitoringSettings.from_config(config),
            is_leader=lambda: self.lease.held,
            register=self.registry.register, manifest_of=self.registry.get_manifest,
            start_rollout=self.rollouts.create, deploy=self.deployments.deploy,
            device_ids=self.fleet.device_ids, export_data=self.export_training_data,
            notifier=self.notifier)
        # experiments: shadow runs and A/B tests; a promotion is a rollout
        self.experiments = ExperimentService(
            self.experiment_store, self.registry.get_manifest, self.devices.rows,
            self._devices_in_live_rollouts, self.bridge.publish_experiment, self.signer.envelope,
            self.rollouts.create, resign_after_s=config.manifest_ttl_s / 2)
        # per-group sampling on the devices: the shares set per selector, each device's order
        self.sampling = SamplingStore(self.db)
        self.sampling_publisher = SamplingPublisher(
            self.sampling, self.devices.labels,
            self.bridge.publish_sampling)
        # read models of the views
        self.fleet_views = FleetViews(self.db)
        self.model_views = ModelViews(self.db, self.registry)
        self.deployment_views = DeploymentViews(self.db, self.fleet)
        self.health = FleetHealth(self.db, self.registry, alerts=lambda: self.alert_marks.annotate(
                                      self.alerts.alerts(), time.time()),
                                  metrics_store=self.metrics)
        self.drift = DriftViews(self.db, self.metrics.profile)
        try:
            thresholds = HealthThresholds.from_dict(config.health_alerts)
        except ValueError as exc:
            raise ValidationError(f"health_alerts: {exc}") from None
        self.device_health = DeviceHealthViews(self.health_store, thresholds)

    def _devices_in_live_rollouts(self) -> dict[str, str]:
        """Device -> the live rollout that holds it (an experiment refuses these devices)."""
        held: dict[str, str] = {}
        for record in self.rollouts.store.query(LIVE):
            for device in record.state.assignment:
                held[device] = f"{record.spec.display_name} (#{record.id})"
        return held

    async def _experiment_loop(self) -> None:
        """The leader re-signs the orders of running experiments before they expire."""
        while True:
            await asyncio.sleep(60.0)
            if not self.lease.held:
                continue
            try:
                await self.experiments.refresh()
            except Exception:
                log.exception("refreshing experiment orders failed")

    async def _sampling_loop(self) -> None:
        """The leader sends each device the sampling share of its group when it changes."""
        while True:
            if self.lease.held and self.bridge.link.connected:
                try:
                    publisher = self.sampling_publisher
                    publisher.send(await asyncio.to_thread(publisher.changes))
                except Exception:
                    log.exception("publishing sampling orders failed")
            else:
                self.sampling_publisher.forget()  # send them all again once leading
            await asyncio.sleep(SAMPLING_RECONCILE_S)

    async def start(self) -> None:
        # refuses (RootTaken) before anything is subscribed or published for the fleet
        await claim_root(self.config.broker, self.config.topic_root, self.instance,
                         self.config.controller_presence_wait_s)
        await self.bridge.start()
        await self.lease.start()
        self.monitoring.start()
        await self.rollouts.start()
        self._key_task = asyncio.create_task(self.key_updates.run())
        self._experiment_task = asyncio.create_task(self._experiment_loop())
        self._sampling_task = asyncio.create_task(self._sampling_loop())
        log.info("controller connected to broker %s, database %s", self.config.broker, self.db)

    async def stop(self) -> None:
        for task in (self._key_task, getattr(self, "_experiment_task", None),
                     getattr(self, "_sampling_task", None)):
            if task is not None:
                task.cancel()
        await self.monitoring.stop()
        await self.rollouts.stop()
        await self.lease.stop()  # hand the lease over at once
        await self.bridge.stop()
        self.db.dispose()


    def export_training_data(self, model: str, out: Path, since: float | None) -> int:
        """The model's predictions (every version) since ``since`` as Parquet at ``out``, for
        the retraining hook; returns the rows written (0: none, and no file)."""
        try:
            exporter = Exporter(self.db, self.registry.get_manifest(model),
                                ExportQuery(model, since=since))
            return write_export(exporter, "parquet", out).rows
        except EmptyExport:
            return 0
    def push_model(self, manifest: Manifest, artifact: bytes) -> Manifest:
        return self.registry.register(manifest, artifact)

    async def deploy(self, model: str, version: int | None = None,
                     device_ids: list[str] | None = None,
                     probation: ProbationPolicy | None = None) -> dict[str, Any]:
        """Set the desired model of the given devices at once (see :class:`Deployments`)."""
        return await self.deployments.deploy(model, version, device_ids, probation)


def open_artifact_store(config: ControllerConfig) -> ArtifactStore | ObjectArtifactStore:
    """The artifact store the configuration names (``artifact_store`` or ``artifact_dir``)."""
    cache = ArtifactStore(config.artifacts_path)
    if not config.artifact_store:
        return cache
    location = StoreLocation.parse(config.artifact_store)
    store = ObjectArtifactStore(
        location, s3_client(config.artifact_store_endpoint, config.artifact_store_region), cache,
        public_url=config.artifact_store_public_url,
        presign_s=min(config.artifact_store_presign_s, config.manifest_ttl_s))
    log.info("artifacts in %s (local cache %s)", location, config.artifacts_path)
    return store
