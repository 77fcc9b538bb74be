"""`edgewise devices approve|reject` on the controller host: the decision is stored in the
claims and written to the controller's audit log, as the REST approvals API writes it, with the
host user as the actor (controller/fleet/cli.py, controller/security/approvals.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from controller.app.cli import cli
from controller.audit.store import AuditLog
from controller.cli.client import local_actor
from controller.security.claims import ClaimStore
from controller.storage import Database, migrator
from edgewise_wire import public_keys
from edgewise_wire.csr import csr_pem


def _csr(device_id: str) -> str:
    return csr_pem(device_id, public_keys.new_device_key()[0]).decode()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A controller's data directory: its fleet CA and its (migrated) database."""
    ClaimStore.for_data_dir(tmp_path).ca.init()
    db = Database(str(tmp_path / "controller.sqlite"))
    try:
        migrator.upgrade(db)
    finally:
        db.dispose()
    return tmp_path


def _audit(data_dir: Path) -> list[dict[str, object]]:
    db = Database(str(data_dir / "controller.sqlite"))
    try:
        return list(reversed(AuditLog(db).page(action="enrollment.")["entries"]))
    finally:
        db.dispose()


def test_host_approvals_and_rejections_are_audited(data_dir: Path) -> None:
    claims = ClaimStore.for_data_dir(data_dir)
    token = claims.create_token("line-3", group="line-3", quota=5, expires_in_s=3600,
                                labels={"site": "oslo"}, device_class="camera-v2",
                                approval="manual")
    for device in ("cam-1", "cam-2"):
        assert claims.request(token, device, _csr(device)).status == "pending"
    runner = CliRunner()
    where = ["--data-dir", str(data_dir)]

    approved = runner.invoke(cli, ["devices", "approve", "cam-1", "--json", *where])
    assert approved.exit_code == 0, approved.output
    assert json.loads(approved.output) == {"device_id": "cam-1", "status": "issued"}
    rejected = runner.invoke(cli, ["devices", "reject", "cam-2", "--reason", "not ours", *where])
    assert rejected.exit_code == 0, rejected.output
    assert "rejected cam-2: not ours" in rejected.output

    entries = _audit(data_dir)
    actor = f"host:{local_actor()}"
    assert [(e["action"], e["devices"], e["actor"]) for e in entries] == [
        ("enrollment.approved", ["cam-1"], actor), ("enrollment.rejected", ["cam-2"], actor)]
    assert entries[0]["detail"] == {"labels": {"site": "oslo", "group": "line-3"},
                                    "device_class": "camera-v2"}
    assert entries[1]["detail"] == {"reason": "not ours"}

    # a decision the claims refuse (no longer pending) is not audited
    again = runner.invoke(cli, ["devices", "approve", "cam-1", *where])
    assert again.exit_code == 1 and "not pending" in again.output
    assert len(_audit(data_dir)) == 2


def test_no_decision_without_the_database_to_audit_it(tmp_path: Path) -> None:
    claims = ClaimStore.for_data_dir(tmp_path)
    claims.ca.init()
    token = claims.create_token("t", group="g", quota=1, expires_in_s=3600, approval="manual")
    assert claims.request(token, "d1", _csr("d1")).status == "pending"
    result = CliRunner().invoke(cli, ["devices", "approve", "d1", "--data-dir", str(tmp_path)])
    assert result.exit_code != 0 and "controller database" in result.output
    assert [r["device_id"] for r in claims.pending()] == ["d1"]  # still waiting
