"""The controller's configuration: one dataclass, loaded from flags, environment or TOML."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from controller.errors import ValidationError
from edgewise_mqtt.link import BrokerAddress
from edgewise_wire.errors import TopicError
from edgewise_wire.topics import ROOT, validate_topic_root

DEFAULT_HTTP_PORT = 8700


@dataclass(frozen=True)
class ControllerConfig:
    data_dir: Path = Path("edgewise-data")
    db_url: str | None = None  # default: SQLite file in data_dir
    # bring the database to this release's schema at start (`edgewise db upgrade` does it by
    # hand); False: a database behind the code is refused, for operators who migrate themselves
    auto_migrate: bool = True
    broker: BrokerAddress = field(default_factory=BrokerAddress)
    http_host: str = "127.0.0.1"
    http_port: int = DEFAULT_HTTP_PORT
    api_token: str | None = None  # when set, mutating REST calls need "Authorization: Bearer"
    share_group: str | None = None  # MQTT shared-subscription group for several replicas
    # -- several controllers on one broker (docs/deploy.md): every topic of this fleet is under
    # topic_root (its agents use the same one); at start the controller reads the presence
    # retained under it and refuses to run if another controller (another database) is online
    # there, waiting at most controller_presence_wait_s for the retained message
    topic_root: str = ROOT
    controller_presence_wait_s: float = 0.5
    # -- dashboard and read-only views (docs/dashboard.md) --
    # False (the default): once any API token exists, the dashboard's data, /metrics and every
    # GET of the API need "Authorization: Bearer" with an admin or a read token (read_token,
    # the token handed to the group of people who may look but not change). True (or
    # `serve --public-dashboard`): those views are open to anyone who reaches the port; calls
    # that change state still need an admin token. /api/v1/health is always open.
    dashboard_public: bool = False
    read_token: str | None = None
    # -- monitoring (docs/monitoring.md): alert evaluation and the retraining hook --
    alert_interval_s: float = 10.0  # how often metrics windows and silences are judged
    # latency alerts: a window is bad above alert_latency_p95_ms; the alert fires after
    # alert_fire_after bad windows in a row and clears after alert_clear_after good ones
    alert_fire_after: int = 3
    alert_clear_after: int = 3
    alert_latency_p95_ms: float = 250.0
    alert_silent_after_s: float = 300.0
    # drift, accuracy, bias and concept alerts come from sequential tests with a stated
    # false-alarm rate (controller.monitoring.watch): their settings by their flat names, e.g.
    # {drift_alpha = 1e-7, accuracy_tolerance = 0.0}; docs/monitoring.md lists every one
    detectors: dict[str, Any] = field(default_factory=dict)
    # devices of one group (this label's value) running one version pool their evidence, so a
    # change that hits them all is seen sooner than by one device; "" pools the whole fleet
    alert_group_by: str = "site"
    # one group of this label significantly less accurate than the rest raises a segment alert,
    # judged once per period on its labels (exact test, family-wise alpha); "" switches it off
    alert_segment_label: str = "site"
    alert_segment_alpha: float = 0.01
    alert_segment_min_labels: int = 100
    alert_segment_period_s: float = 3600.0
    # device health alerts (docs/monitoring.md, "Device health"): thresholds by name, e.g.
    # {temp_c = 75.0, disk_free_share = 0.1, leak_bytes_per_hour = 2097152}
    health_alerts: dict[str, Any] = field(default_factory=dict)
    retrain_on: str = ""  # alert kinds that start the hook, comma-separated: "accuracy,drift"
    retrain_command: str | None = None  # a command line, run without a shell
    retrain_webhook: str | None = None  # or a URL the alert context is POSTed to
    retrain_timeout_s: float = 900.0
    retrain_cooldown_s: float = 3600.0  # one run per (kind, model) in this span
    retrain_canary: bool = False  # put a produced model on a canary:
    # with a selector set, a gated rollout over it ("" = every device: single-model fleets only),
    # first wave the canary; without one, a deploy to one of the alerting devices
    retrain_rollout_selector: str | None = None
    retrain_rollout_waves: str = "1,10%,50%,100%"
    # -- alerts out (docs/integrations.md): Prometheus Alertmanager's base URL
    # (http://alertmanager:9093) and/or a webhook signed with HMAC-SHA256 under the secret;
    # bodies wait on a bounded queue per receiver and are retried until delivered
    alertmanager_url: str | None = None
    alert_webhook_url: str | None = None
    alert_webhook_secret: str | None = None
    alert_notify_queue: int = 1000
    alert_resend_s: float = 60.0  # firing alerts re-sent to Alertmanager this often
    # -- security (docs/security.md): API over HTTPS when both are set; named tokens
    # live in {data_dir}/api-tokens.json (controller/security/auth.py). Without any token the API may
    # only listen on a loopback address, unless allow_open_api.
    http_tls_cert: str | None = None
    http_tls_key: str | None = None
    allow_open_api: bool = False
    # -- replicas (docs/scaling.md): a shared content-addressed artifact directory
    # (default {data_dir}/artifacts) and the lease that picks the one deciding replica
    artifact_dir: Path | None = None
    # -- artifacts in an S3-compatible object store (docs/scaling.md): "s3://bucket/prefix";
    # artifact_dir is then each replica's local, verified cache. Devices download from a
    # presigned URL (valid artifact_store_presign_s, at most 7 days) or, with
    # artifact_store_public_url, from that base URL; credentials: boto3's usual chain
    artifact_store: str | None = None
    artifact_store_endpoint: str | None = None  # e.g. http://minio:9000 (None: AWS)
    artifact_store_region: str | None = None
    artifact_store_public_url: str | None = None
    artifact_store_presign_s: float = 7 * 86400.0
    lease_s: float = 5.0  # another replica takes over this long after the holder dies
    lease_renew_s: float = 1.0
    # -- signed updates (controller/security/desired_signer.py): how long a signed manifest
    # (and a rollback order) stays valid; a device offline for longer needs it published again
    manifest_ttl_s: float = 30 * 86400.0

    @property
    def artifacts_path(self) -> Path:
        return self.artifact_dir or self.data_dir / "artifacts"

    @property
    def database_url(self) -> str:
        return self.db_url or str(self.data_dir / "controller.sqlite")


# settings of the per-window drift and accuracy rules that the sequential tests replaced, and
# what to set instead (a config that still names one is refused with this sentence)
REPLACED_SETTINGS = {
    "alert_drift_alpha": "drift alerts are now a sequential test with a false-alarm rate per row;"
                         " set detectors.drift_alpha (default 1e-7) instead",
    "alert_accuracy_max_drop": "accuracy alerts now test the error rate against the reference; "
                               "set detectors.accuracy_tolerance (default 0: any loss the labels "
                               "prove) instead",
    "alert_accuracy_floor": "accuracy alerts now test against the version's reference accuracy "
                            "(detectors.accuracy_*); there is no absolute floor",
    "alert_accuracy_min_labels": "the sequential accuracy test needs no minimum per window: it "
                                 "pools labels until they prove a loss",
}


def load_controller_config(path: Path | None = None, **overrides: Any) -> ControllerConfig:
    """Merge, lowest first: defaults, TOML file, EDGEWISE_* environment, explicit overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values.update(tomllib.loads(path.read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValidationError(f"cannot read controller config {path}: {exc}") from None
    env = {
        "db_url": os.environ.get("EDGEWISE_DB_URL"),
        "api_token": os.environ.get("EDGEWISE_API_TOKEN"),
        "data_dir": os.environ.get("EDGEWISE_DATA_DIR"),
        "alert_webhook_secret": os.environ.get("EDGEWISE_ALERT_WEBHOOK_SECRET"),
        "topic_root": os.environ.get("EDGEWISE_TOPIC_ROOT"),
    }
    values.update({k: v for k, v in env.items() if v})
    values.update({k: v for k, v in overrides.items() if v is not None})
    replaced = sorted(set(values) & set(REPLACED_SETTINGS))
    if replaced:
        raise ValidationError("; ".join(f"{k}: {REPLACED_SETTINGS[k]}" for k in replaced))
    known = {f.name for f in fields(ControllerConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValidationError(f"unknown controller config keys {sorted(unknown)}; known: {sorted(known)}")
    if isinstance(values.get("broker"), dict):
        values["broker"] = BrokerAddress(**values["broker"])
    elif isinstance(values.get("broker"), str):
        values["broker"] = BrokerAddress.parse(values["broker"])
    if "data_dir" in values:
        values["data_dir"] = Path(values["data_dir"])
    if values.get("artifact_dir"):
        values["artifact_dir"] = Path(values["artifact_dir"])
    group = values.get("share_group")
    if group is not None and (not isinstance(group, str) or not group
                              or any(c in group for c in "/+#")):
        raise ValidationError(f"share_group {group!r} is not a valid MQTT shared-subscription "
                              "group name: use letters, digits, '-' or '_' (no '/', '+', '#')")
    if "topic_root" in values:
        try:
            validate_topic_root(values["topic_root"])
        except TopicError as exc:
            raise ValidationError(f"topic_root: {exc}") from None
    wait = values.get("controller_presence_wait_s")
    if wait is not None and (isinstance(wait, bool) or not isinstance(wait, (int, float))
                             or not 0 < wait <= 60):
        raise ValidationError(f"controller_presence_wait_s {wait!r} must be a number of seconds "
                              "within (0, 60]")
    if not isinstance(values.get("dashboard_public", False), bool):
        raise ValidationError(f"dashboard_public {values['dashboard_public']!r} must be true "
                              "or false")
    if not isinstance(values.get("auto_migrate", True), bool):
        raise ValidationError(f"auto_migrate {values['auto_migrate']!r} must be true or false")
    ttl = values.get("manifest_ttl_s")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float))
                            or not 0 < ttl < float("inf")):
        raise ValidationError(f"manifest_ttl_s {ttl!r} must be a positive number of seconds")
    size = values.get("alert_notify_queue")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValidationError(f"alert_notify_queue {size!r} must be a positive number of bodies")
    resend = values.get("alert_resend_s")
    if resend is not None and (isinstance(resend, bool) or not isinstance(resend, (int, float))
                               or not 0 < resend < float("inf")):
        raise ValidationError(f"alert_resend_s {resend!r} must be a positive number of seconds")
    return ControllerConfig(**values)
