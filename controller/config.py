"""The controller's configuration: one dataclass, loaded from flags, environment or TOML."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from controller.errors import ValidationError
from edge_agent.mqtt_link import BrokerAddress

DEFAULT_HTTP_PORT = 8700


@dataclass(frozen=True)
class ControllerConfig:
    data_dir: Path = Path("edgewise-data")
    db_url: str | None = None  # default: SQLite file in data_dir
    broker: BrokerAddress = field(default_factory=BrokerAddress)
    http_host: str = "127.0.0.1"
    http_port: int = DEFAULT_HTTP_PORT
    api_token: str | None = None  # when set, mutating REST calls need "Authorization: Bearer"
    share_group: str | None = None  # MQTT shared-subscription group for several replicas

    @property
    def database_url(self) -> str:
        return self.db_url or str(self.data_dir / "controller.sqlite")


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
    }
    values.update({k: v for k, v in env.items() if v})
    values.update({k: v for k, v in overrides.items() if v is not None})
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
    return ControllerConfig(**values)
