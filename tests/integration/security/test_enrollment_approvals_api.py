"""``/api/v1/enrollments``: pending enrollment requests listed for any reader, approved or
rejected with the admin token only, each decision in the audit log under the token's identity;
the device learns the decision when it asks again (controller/security/approvals_api.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller.app.api import create_app
from controller.app.service import Controller
from controller.security.auth import TokenStore
from controller.security.claims import ClaimStore
from edgewise_wire.csr import csr_pem
from tests.harness.web_fleet import make_controller

ADMIN, READER = "admin-token-1", "read-token-1"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _csr(device_id: str) -> str:
    return csr_pem(device_id, device_id.encode().ljust(32, b"s")).decode()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[Controller, TestClient]]:
    c = make_controller(tmp_path, api_token=ADMIN, read_token=READER, dashboard_public=False)
    try:
        with TestClient(create_app(c)) as client:
            yield c, client
    finally:
        c.db.dispose()


def test_pending_requests_are_approved_or_rejected_by_an_admin_and_audited(
        app: tuple[Controller, TestClient]) -> None:
    c, client = app
    claims = ClaimStore.for_data_dir(c.config.data_dir)
    claim = claims.create_token("line-3", group="line-3", quota=5, expires_in_s=3600,
                                labels={"site": "oslo"}, device_class="camera-v2",
                                approval="manual")
    for device in ("cam-1", "cam-2"):
        assert claims.request(claim, device, _csr(device)).status == "pending"

    assert client.get("/api/v1/enrollments/pending").status_code == 401
    pending = client.get("/api/v1/enrollments/pending", headers=_bearer(READER))
    assert pending.status_code == 200, pending.text
    rows = pending.json()
    assert [r["device_id"] for r in rows] == ["cam-1", "cam-2"]
    assert rows[0]["group"] == "line-3" and rows[0]["device_class"] == "camera-v2"
    assert rows[0]["labels"] == {"site": "oslo", "group": "line-3"}
    assert len(rows[0]["public_key_sha256"]) == 64

    # a read token may look, not decide
    assert client.post("/api/v1/enrollments/cam-1/approve").status_code == 401
    assert client.post("/api/v1/enrollments/cam-1/approve",
                       headers=_bearer(READER)).status_code == 403
    assert client.post("/api/v1/enrollments/cam-2/reject", json={"reason": "x"},
                       headers=_bearer(READER)).status_code == 403

    approved = client.post("/api/v1/enrollments/cam-1/approve", headers=_bearer(ADMIN))
    assert approved.status_code == 200, approved.text
    assert approved.json() == {"device_id": "cam-1", "status": "issued"}
    rejected = client.post("/api/v1/enrollments/cam-2/reject",
                           json={"reason": "not on the order list"}, headers=_bearer(ADMIN))
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"

    # the devices learn it when they ask again
    issued = claims.request(claim, "cam-1", _csr("cam-1"))
    assert issued.status == "issued" and issued.certificate is not None
    refused = claims.request(claim, "cam-2", _csr("cam-2"))
    assert (refused.status, refused.reason) == ("rejected", "not on the order list")
    assert client.get("/api/v1/enrollments/pending", headers=_bearer(ADMIN)).json() == []

    # decided once: a second decision conflicts; an unknown request is not found
    again = client.post("/api/v1/enrollments/cam-1/reject", json={}, headers=_bearer(ADMIN))
    assert again.status_code == 409 and "not pending" in again.json()["detail"]
    assert client.post("/api/v1/enrollments/nobody/approve",
                       headers=_bearer(ADMIN)).status_code == 404
    too_long = client.post("/api/v1/enrollments/cam-1/reject", json={"reason": "x" * 201},
                           headers=_bearer(ADMIN))
    assert too_long.status_code == 422

    entries = client.get("/api/v1/audit", params={"action": "enrollment."},
                         headers=_bearer(READER)).json()["entries"]
    assert [(e["action"], e["devices"], e["actor"]) for e in entries] == [
        ("enrollment.rejected", ["cam-2"], "operator:config:api_token"),
        ("enrollment.approved", ["cam-1"], "operator:config:api_token")]
    assert entries[0]["detail"] == {"reason": "not on the order list"}
    assert entries[1]["detail"]["device_class"] == "camera-v2"


def test_the_audit_actor_is_the_named_token_that_decided(tmp_path: Path) -> None:
    c = make_controller(tmp_path, dashboard_public=False)
    token = TokenStore.for_data_dir(tmp_path).create("ops-anna", "admin")
    claims = ClaimStore.for_data_dir(tmp_path)
    claim = claims.create_token("t", group="g", quota=1, expires_in_s=3600, approval="manual")
    claims.request(claim, "d-1", _csr("d-1"))
    try:
        with TestClient(create_app(c)) as client:
            r = client.post("/api/v1/enrollments/d-1/approve",
                            headers={**_bearer(token), "X-Edgewise-Actor": "someone@else"})
            assert r.status_code == 200, r.text
            entry = client.get("/api/v1/audit", headers=_bearer(token)).json()["entries"][0]
    finally:
        c.db.dispose()
    assert (entry["action"], entry["actor"]) == ("enrollment.approved", "operator:ops-anna")
