"""The agent configuration shipped in deploy/ loads as the install script writes it."""

from __future__ import annotations

from tests.harness.paths import REPO_ROOT


def test_the_shipped_example_config_loads() -> None:
    from edge_agent.config import load_config

    example = REPO_ROOT / "deploy" / "agent.toml.example"
    config = load_config(example)
    assert config.device_id == "pi-berlin-01"
    assert config.labels == {"site": "berlin", "hw": "pi4"}
    assert config.broker.host == "mqtt.example.net"
