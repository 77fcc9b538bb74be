"""REST API tokens: admin for calls that change state, read for views, refused otherwise."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from controller.app.api import create_app
from controller.app.service import Controller
from controller.config import ControllerConfig
from controller.errors import ValidationError
from controller.security.auth import ApiAuth, TokenStore, check_exposure

ADMIN, READER = "ewa_admin-token-for-tests", "ewr_read-token-for-tests"

MUTATING: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/v1/deployments", {"json": {"model": "iris"}}),
    ("POST", "/api/v1/models/iris/versions",
     {"data": {"manifest": "{}"}, "files": {"artifact": ("a.bin", b"x")}}),
]
VIEWS = ["/api/v1/devices", "/api/v1/models", "/api/v1/deployments", "/api/v1/telemetry/count"]


def _app(tmp_path: Path, **config: Any) -> Iterator[TestClient]:
    controller = Controller(ControllerConfig(data_dir=tmp_path, **config))
    try:
        with TestClient(create_app(controller)) as client:
            yield client
    finally:
        controller.db.dispose()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    yield from _app(tmp_path, api_token=ADMIN, read_token=READER, dashboard_public=False)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("method, path, body", MUTATING)
def test_mutating_calls_need_an_admin_token(api: TestClient, method: str, path: str,
                                            body: dict[str, Any]) -> None:
    missing = api.request(method, path, **body)
    assert missing.status_code == 401
    assert "Bearer" in missing.json()["detail"] and missing.headers["www-authenticate"] == "Bearer"
    assert api.request(method, path, headers={"Authorization": ADMIN}, **body).status_code == 401
    assert api.request(method, path, headers=_bearer("ewa_wrong"), **body).status_code == 401
    read_only = api.request(method, path, headers=_bearer(READER), **body)
    assert read_only.status_code == 403 and "read-only" in read_only.json()["detail"]
    # an admin token passes authentication; the call then fails on its merits (no such model,
    # an invalid manifest), not on authorization
    admitted = api.request(method, path, headers=_bearer(ADMIN), **body)
    assert admitted.status_code not in (401, 403), admitted.text


@pytest.mark.parametrize("path", VIEWS)
def test_views_need_a_token_when_they_are_not_public(api: TestClient, path: str) -> None:
    assert api.get(path).status_code == 401
    assert api.get(path, headers=_bearer("nope")).status_code == 401
    assert api.get(path, headers=_bearer(READER)).status_code == 200
    assert api.get(path, headers=_bearer(ADMIN)).status_code == 200


def test_health_stays_open_for_load_balancers(api: TestClient) -> None:
    assert api.get("/api/v1/health").status_code == 200


def test_views_are_open_when_dashboard_public(tmp_path: Path) -> None:
    for client in _app(tmp_path, api_token=ADMIN, dashboard_public=True):
        assert client.get("/api/v1/devices").status_code == 200
        assert client.post("/api/v1/deployments", json={"model": "x"}).status_code == 401


def test_token_file_changes_take_effect_without_a_restart(tmp_path: Path) -> None:
    for client in _app(tmp_path, dashboard_public=False):
        assert client.get("/api/v1/devices").status_code == 200  # no token anywhere: open
        store = TokenStore.for_data_dir(tmp_path)
        admin = store.create("ops", "admin")
        reader = store.create("grafana", "read")
        assert client.get("/api/v1/devices").status_code == 401
        assert client.get("/api/v1/devices", headers=_bearer(reader)).status_code == 200
        assert client.post("/api/v1/deployments", json={"model": "x"},
                           headers=_bearer(reader)).status_code == 403
        assert client.post("/api/v1/deployments", json={"model": "x"},
                           headers=_bearer(admin)).status_code == 404
        who = client.get("/api/v1/auth/whoami", headers=_bearer(reader)).json()
        assert who == {"auth": True, "name": "grafana", "scope": "read"}
        store.revoke("grafana")
        assert client.get("/api/v1/devices", headers=_bearer(reader)).status_code == 401
        assert client.get("/api/v1/devices", headers=_bearer(admin)).status_code == 200


def test_token_file_keeps_hashes_only(tmp_path: Path) -> None:
    store = TokenStore.for_data_dir(tmp_path)
    token = store.create("ci", "read")
    text = store.path.read_text()
    assert token not in text and token[12:] not in text
    assert store.path.stat().st_mode & 0o077 == 0
    assert [(t.name, t.scope) for t in store.list()] == [("ci", "read")]
    assert json.loads(text)["tokens"]["ci"]["scope"] == "read"
    with pytest.raises(ValidationError):
        store.create("bad name!", "read")
    with pytest.raises(ValidationError):
        store.create("x", "superuser")


def test_an_open_api_is_refused_on_a_network_address(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no API token"):
        check_exposure(ControllerConfig(data_dir=tmp_path, http_host="0.0.0.0"))
    check_exposure(ControllerConfig(data_dir=tmp_path, http_host="127.0.0.1"))
    check_exposure(ControllerConfig(data_dir=tmp_path, http_host="0.0.0.0", api_token=ADMIN))
    check_exposure(ControllerConfig(data_dir=tmp_path, http_host="0.0.0.0",
                                    allow_open_api=True))
    TokenStore.for_data_dir(tmp_path).create("ops", "admin")
    check_exposure(ControllerConfig(data_dir=tmp_path, http_host="0.0.0.0"))
    assert ApiAuth.from_config(ControllerConfig(data_dir=tmp_path)).enabled
    with pytest.raises(ValidationError, match="both http_tls_cert and http_tls_key"):
        check_exposure(ControllerConfig(data_dir=tmp_path, http_tls_cert="server.crt"))
