"""The agent's configuration: one dataclass, one TOML loader, defaults a Pi can live with."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from edgewise_mqtt.link import BrokerAddress
from edgewise_wire.errors import TopicError
from edgewise_wire.topics import ROOT, validate_device_id, validate_topic_root


class ConfigError(ValueError):
    """A configuration that cannot work; the message names the key and what to do."""


@dataclass(frozen=True)
class AgentConfig:
    device_id: str
    data_dir: Path
    broker: BrokerAddress = field(default_factory=BrokerAddress)
    # every topic of this device lives under this root: several fleets (controllers, tenants)
    # share one broker with a root each; the controller of this device uses the same one
    topic_root: str = ROOT
    labels: dict[str, str] = field(default_factory=dict)
    device_class: str = "generic"
    keepalive_s: int = 30
    # telemetry: records are buffered in memory for at most flush_interval_s, then written to
    # the SQLite outbox in one transaction, then sent in batches of batch_size
    telemetry_flush_interval_s: float = 0.2
    telemetry_batch_size: int = 500
    telemetry_max_inflight_batches: int = 4
    ack_timeout_s: float = 10.0
    outbox_max_records: int = 200_000
    outbox_overflow: str = "drop_oldest"
    # an update asks again for missing chunks when none arrived for this long
    chunk_repair_interval_s: float = 3.0
    # when a signed manifest names an HTTP(S) URL for its artifact (an object store), download
    # it from there with range requests first, MQTT chunks after that failed; false: MQTT only
    artifact_http: bool = True
    feedback_memory: int = 20_000  # how many recent predictions feedback can still refer to
    # the largest model artifact this device takes (memory/storage budget of a small board);
    # a larger one fails before any download, reported as a failed activation
    max_model_bytes: int | None = None
    # the memory the served model and an experiment's candidate may take together (their
    # measured sessions); a candidate that does not fit is refused with the reason (None: no
    # limit beyond max_model_bytes)
    model_memory_bytes: int | None = None
    # localhost HTTP API for applications on the device (predict, feedback, health); None: off
    http_port: int | None = None
    http_host: str = "127.0.0.1"
    # manifest-signing public keys the device trusts: file paths (relative to the config file)
    # or PEM text; written by `edgewise devices enroll`
    trusted_keys: tuple[str, ...] = ()
    # the health window a new model serves under before it is committed, when neither
    # the desired state (rollout) nor the manifest sets one; 0 commits after the smoke test
    probation_s: float = 0.0
    # monitoring (docs/monitoring.md): the active model's window summary goes to the
    # outbox as a "metrics" record every metrics_window_s; raw prediction records are kept with
    # probability prediction_sample_rate (the window summaries always count every prediction)
    metrics_window_s: float = 60.0
    prediction_sample_rate: float = 1.0
    # one "predictions" record per flush and model version (arrays, with the input rows)
    # instead of one "prediction" record per prediction: far less per prediction on the device
    # and at the controller, and the inputs for `edgewise data export`. false keeps the
    # per-prediction form, for a controller older than the release that reads "predictions"
    telemetry_columnar: bool = True
    # device health (docs/monitoring.md, "Device health"): the process and the board are
    # sampled every health_sample_s and summarised per metrics_window_s into a "health" record;
    # 0 turns sampling off (a shorter metrics window is sampled once). log_ring_lines: recent log lines kept for `edgewise device logs`,
    # at log_ring_level and above
    health_sample_s: float = 5.0
    log_ring_lines: int = 200
    log_ring_level: str = "WARNING"

    def __post_init__(self) -> None:
        validate_device_id(self.device_id)
        try:
            validate_topic_root(self.topic_root)
        except TopicError as exc:
            raise ConfigError(f"topic_root: {exc}") from None
        if self.telemetry_batch_size < 1:
            raise ConfigError("telemetry_batch_size must be >= 1")
        if self.outbox_overflow not in ("drop_oldest", "refuse_new"):
            raise ConfigError("outbox_overflow must be 'drop_oldest' or 'refuse_new'")
        if not isinstance(self.artifact_http, bool):
            raise ConfigError("artifact_http must be true or false")
        if self.max_model_bytes is not None and (
                isinstance(self.max_model_bytes, bool) or not isinstance(self.max_model_bytes, int)
                or self.max_model_bytes < 1):
            raise ConfigError("max_model_bytes must be a whole number of bytes >= 1 "
                              "(leave it out for no limit)")
        if self.model_memory_bytes is not None and (
                isinstance(self.model_memory_bytes, bool)
                or not isinstance(self.model_memory_bytes, int) or self.model_memory_bytes < 1):
            raise ConfigError("model_memory_bytes must be a whole number of bytes >= 1 "
                              "(leave it out for no limit)")
        if not (isinstance(self.probation_s, (int, float)) and 0.0 <= self.probation_s <= 86_400):
            raise ConfigError("probation_s must be within [0, 86400] seconds (0: commit a new "
                              "model right after its smoke test)")
        if not (isinstance(self.metrics_window_s, (int, float))
                and 0 < self.metrics_window_s < float("inf")):
            raise ConfigError("metrics_window_s must be a positive number of seconds")
        if not (isinstance(self.prediction_sample_rate, (int, float))
                and 0.0 <= self.prediction_sample_rate <= 1.0):
            raise ConfigError("prediction_sample_rate must be within [0, 1] (1: keep every "
                              "prediction record; window summaries always count them all)")

        if not (isinstance(self.health_sample_s, (int, float))
                and 0 <= self.health_sample_s < float("inf")):
            raise ConfigError("health_sample_s must be 0 (off) or a positive number of seconds "
                              "(a window shorter than it holds one sample)")
        if not (isinstance(self.log_ring_lines, int) and 0 <= self.log_ring_lines <= 10_000):
            raise ConfigError("log_ring_lines must be a whole number within [0, 10000]")
        if self.log_ring_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError("log_ring_level must be DEBUG, INFO, WARNING or ERROR")

    def with_overrides(self, **kwargs: Any) -> AgentConfig:
        return replace(self, **kwargs)


_BROKER_KEYS = {f.name for f in fields(BrokerAddress)}
_AGENT_KEYS = {f.name for f in fields(AgentConfig)}


def load_config(path: Path) -> AgentConfig:
    """Load an agent configuration file.

    Example::

        device_id = "pi-berlin-01"
        data_dir = "/var/lib/edgewise-agent"
        device_class = "pi4"
        topic_root = "ew/v1"        # the same root as this fleet's controller
        [broker]
        host = "mqtt.example.net"
        port = 1883
        [labels]
        site = "berlin"
    """
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return config_from_dict(raw, base_dir=path.parent)


def config_from_dict(raw: dict[str, Any], base_dir: Path = Path(".")) -> AgentConfig:
    unknown = set(raw) - _AGENT_KEYS
    if unknown:
        raise ConfigError(f"unknown config keys {sorted(unknown)}; known: {sorted(_AGENT_KEYS)}")
    for key in ("device_id", "data_dir"):
        if key not in raw:
            raise ConfigError(f"config needs {key!r}")
    broker_raw = raw.get("broker", {})
    unknown = set(broker_raw) - _BROKER_KEYS
    if unknown:
        raise ConfigError(f"unknown [broker] keys {sorted(unknown)}; known: {sorted(_BROKER_KEYS)}")
    values = dict(raw)
    # -- security: certificate and key paths are relative to the config file, so an
    # enrollment bundle can be copied anywhere
    broker_raw = dict(broker_raw)
    for key in ("tls_ca", "tls_cert", "tls_key"):
        if isinstance(broker_raw.get(key), str):
            broker_raw[key] = str(_relative_to(base_dir, broker_raw[key]))
    trusted = raw.get("trusted_keys", [])
    if not isinstance(trusted, list) or not all(isinstance(k, str) for k in trusted):
        raise ConfigError("trusted_keys must be a list of strings (PEM files or PEM text)")
    values["trusted_keys"] = tuple(
        k if is_pem_text(k) else str(_relative_to(base_dir, k))
        for k in trusted)
    # -- end security
    values["broker"] = BrokerAddress(**broker_raw)
    data_dir = Path(raw["data_dir"])
    values["data_dir"] = data_dir if data_dir.is_absolute() else base_dir / data_dir
    values["labels"] = {str(k): str(v) for k, v in raw.get("labels", {}).items()}
    try:
        return AgentConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def is_pem_text(entry: str) -> bool:
    """A ``trusted_keys`` entry is PEM text itself, or else the path of a PEM file."""
    return entry.lstrip().startswith("-----BEGIN")


def _relative_to(base_dir: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else base_dir / p
