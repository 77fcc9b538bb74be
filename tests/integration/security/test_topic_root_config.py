"""The topic root in the configuration: the agent's, the controller's, and the broker ACL's."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from controller.app.cli import cli
from controller.config import load_controller_config
from controller.errors import ValidationError
from controller.security.broker_config import BrokerSettings, render_acl
from controller.security.pki import controller_identity
from edge_agent.config import ConfigError, config_from_dict, load_config
from edge_agent.daemon import build_config, parse_args


def test_agent_config_takes_a_topic_root_and_refuses_a_bad_one(tmp_path: Path) -> None:
    base = {"device_id": "pi-01", "data_dir": "d"}
    assert config_from_dict(base, tmp_path).topic_root == "ew/v1"
    assert config_from_dict({**base, "topic_root": "acme/ew/v1"}).topic_root == "acme/ew/v1"
    for bad in ("acme/#", "/acme", "$SYS", ""):
        with pytest.raises(ConfigError, match="topic_root: invalid topic root"):
            config_from_dict({**base, "topic_root": bad})
    path = tmp_path / "agent.toml"
    path.write_text('device_id = "pi-01"\ndata_dir = "d"\ntopic_root = "globex/ew/v1"\n')
    assert load_config(path).topic_root == "globex/ew/v1"
    # the daemon's flag overrides the file
    args = parse_args(["--config", str(path), "--topic-root", "initech/ew/v1"])
    assert build_config(args).topic_root == "initech/ew/v1"
    args = parse_args(["--device-id", "pi-02", "--data-dir", str(tmp_path), "--topic-root", "x"])
    assert build_config(args).topic_root == "x"


def test_controller_config_takes_a_topic_root_from_file_env_and_flag(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEWISE_TOPIC_ROOT", raising=False)
    assert load_controller_config().topic_root == "ew/v1"
    path = tmp_path / "controller.toml"
    path.write_text('topic_root = "acme/ew/v1"\n')
    assert load_controller_config(path).topic_root == "acme/ew/v1"
    monkeypatch.setenv("EDGEWISE_TOPIC_ROOT", "globex/ew/v1")
    assert load_controller_config(path).topic_root == "globex/ew/v1"
    assert load_controller_config(path, topic_root="initech").topic_root == "initech"
    with pytest.raises(ValidationError, match="topic_root: invalid topic root 'a/\\+'"):
        load_controller_config(topic_root="a/+")
    with pytest.raises(ValidationError, match="controller_presence_wait_s"):
        load_controller_config(controller_presence_wait_s=0)


def test_serve_refuses_a_bad_topic_root_before_it_starts(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["controller", "serve", "--data-dir", str(tmp_path),
                                      "--topic-root", "acme/#"])
    assert result.exit_code == 1
    assert "invalid topic root 'acme/#'" in result.output
    assert not (tmp_path / "controller.sqlite").exists()


def test_acl_patterns_follow_the_topic_root() -> None:
    acl = render_acl(root="acme/ew/v1")
    assert "pattern read acme/ew/v1/dev/%u/desired" in acl
    assert "pattern write acme/ew/v1/dev/%u/telemetry" in acl
    assert "pattern read acme/ew/v1/art/#" in acl
    assert "pattern read acme/ew/v1/trust/keys" in acl
    assert f"user {controller_identity()}\ntopic readwrite acme/ew/v1/#" in acl
    assert "ew/v1/" not in acl.replace("acme/ew/v1/", "")
    assert render_acl() == render_acl(root="ew/v1")
    with pytest.raises(ValidationError, match="invalid topic root"):
        BrokerSettings(out_dir="/tmp/x", topic_root="acme/+")


def test_broker_config_writes_the_acl_under_the_topic_root(tmp_path: Path) -> None:
    out = tmp_path / "broker"
    result = CliRunner().invoke(cli, ["broker", "config", "--out", str(out), "--hostname",
                                      "127.0.0.1", "--topic-root", "acme/ew/v1",
                                      "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    acl = (out / "acl").read_text()
    assert "pattern read acme/ew/v1/dev/%u/desired" in acl
    assert "topic readwrite acme/ew/v1/#" in acl
    refused = CliRunner().invoke(cli, ["broker", "config", "--out", str(tmp_path / "b2"),
                                       "--hostname", "127.0.0.1", "--topic-root", "#",
                                       "--data-dir", str(tmp_path / "data2")])
    assert refused.exit_code == 1 and "invalid topic root" in refused.output
    assert not (tmp_path / "data2" / "pki").exists()


def test_an_enrolled_device_gets_the_topic_root_of_the_broker_config(tmp_path: Path) -> None:
    from controller.security.enrollment import enroll_device

    data = tmp_path / "data"
    default = enroll_device(data, "pi-01", tmp_path / "out", broker_host="mqtt.example.net")
    assert load_config(default.directory / "agent.toml").topic_root == "ew/v1"
    assert "topic_root" not in (default.directory / "agent.toml").read_text()
    result = CliRunner().invoke(cli, ["broker", "config", "--out", str(tmp_path / "broker"),
                                      "--hostname", "127.0.0.1", "--topic-root", "acme/ew/v1",
                                      "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    bundle = enroll_device(data, "pi-02", tmp_path / "out")
    assert load_config(bundle.directory / "agent.toml").topic_root == "acme/ew/v1"
