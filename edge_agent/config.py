"""The agent's configuration: one dataclass, one TOML loader, defaults a Pi can live with."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from edge_agent.mqtt_link import BrokerAddress
from edge_agent.protocol.topics import validate_device_id


class ConfigError(ValueError):
    """A configuration that cannot work; the message names the key and what to do."""


@dataclass(frozen=True)
class AgentConfig:
    device_id: str
    data_dir: Path
    broker: BrokerAddress = field(default_factory=BrokerAddress)
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
    feedback_memory: int = 20_000  # how many recent predictions feedback can still refer to
    # localhost HTTP API for applications on the device (predict, feedback, health); None: off
    http_port: int | None = None
    http_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        validate_device_id(self.device_id)
        if self.telemetry_batch_size < 1:
            raise ConfigError("telemetry_batch_size must be >= 1")
        if self.outbox_overflow not in ("drop_oldest", "refuse_new"):
            raise ConfigError("outbox_overflow must be 'drop_oldest' or 'refuse_new'")

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
    values["broker"] = BrokerAddress(**broker_raw)
    data_dir = Path(raw["data_dir"])
    values["data_dir"] = data_dir if data_dir.is_absolute() else base_dir / data_dir
    values["labels"] = {str(k): str(v) for k, v in raw.get("labels", {}).items()}
    try:
        return AgentConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
