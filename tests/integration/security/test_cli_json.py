"""The controller-host commands with ``--json``: stdout is one JSON document saying what was done
(warnings and notes stay on stderr), on a real data directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from controller.app.cli import cli


def run_json(*args: str) -> Any:
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_tokens_keys_pki_broker_and_devices_print_json(tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path / "data"))
    created = run_json("tokens", "create", "ci", "--scope", "read", *data)
    assert created["name"] == "ci" and created["scope"] == "read" and len(created["token"]) > 20
    (listed,) = run_json("tokens", "list", *data)
    assert listed["name"] == "ci" and created["token"].startswith(listed["prefix"])
    assert run_json("tokens", "revoke", "ci", *data) == {"name": "ci", "revoked": True}
    assert run_json("tokens", "list", *data) == []

    first = run_json("keys", "create", *data)
    assert first["active"] is True
    second = run_json("keys", "create", *data)
    assert second["active"] is False
    activated = run_json("keys", "activate", second["key_id"], *data)
    assert activated["active"]["key_id"] == second["key_id"]
    assert activated["previous"]["key_id"] == first["key_id"]
    retired = run_json("keys", "retire", first["key_id"], *data)
    assert retired["key_id"] == first["key_id"] and retired["retired_at"]
    rotated = run_json("keys", "rotate", *data)  # its warning goes to stderr
    assert rotated["previous"]["key_id"] == second["key_id"]

    assert run_json("pki", "init", *data)["created"] is True
    assert run_json("pki", "init", *data)["created"] is False
    cert = run_json("pki", "server-cert", "ctl.lan", "--out", str(tmp_path / "tls"), *data)
    assert Path(cert["cert"]).is_file() and cert["hostnames"] == ["ctl.lan"]
    broker = run_json("broker", "config", "--out", str(tmp_path / "broker"), "--hostname",
                      "mqtt.lan", "--reload-command", "true", *data)
    assert broker["port"] == 8883 and Path(broker["include"]).is_file()
    assert [c["name"] for c in broker["controllers"]] and broker["created_ca"] is False

    enrolled = run_json("devices", "enroll", "pi-07", "--out", str(tmp_path / "b"), *data)
    assert enrolled["broker"] == "mqtt.lan:8883" and Path(enrolled["archive"]).is_file()
    revoked = run_json("devices", "revoke", "pi-07", *data)
    assert revoked["device_id"] == "pi-07" and revoked["broker_dir_synced"] is True
    assert "true" in revoked["reload"]
    assert any(i["name"] == "pi-07" and i["revoked_at"] for i in run_json("pki", "list", *data))
