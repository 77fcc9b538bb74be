"""The audit log's actor is the identity of the token that made the call, not what the client
claims in X-Edgewise-Actor (which anyone can set to anything): a call with the "ops" token and
a header naming "mallory" is recorded as "operator:ops". Without any token configured the API has
no identities; the header is then recorded as an unverified claim."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from controller.app.api import create_app
from controller.app.service import Controller
from controller.config import ControllerConfig
from controller.security.auth import TokenStore


def _app(tmp_path: Path, **config: Any) -> Iterator[tuple[TestClient, Controller]]:
    controller = Controller(ControllerConfig(data_dir=tmp_path, **config))
    try:
        with TestClient(create_app(controller)) as client:
            yield client, controller
    finally:
        controller.db.dispose()


def _actors(client: TestClient, headers: dict[str, str]) -> list[str]:
    page = client.get("/api/v1/audit", headers=headers).json()
    return [entry["actor"] for entry in page["entries"]]


def test_the_actor_is_the_token_not_the_header(tmp_path: Path) -> None:
    store = TokenStore.for_data_dir(tmp_path)
    ops = store.create("ops", "admin")
    for client, _ in _app(tmp_path):
        auth = {"Authorization": f"Bearer {ops}"}
        forged = {**auth, "X-Edgewise-Actor": "mallory@evil"}
        assert client.post("/api/v1/devices", json={"device_id": "pre-1"},
                           headers=forged).status_code == 201
        assert client.patch("/api/v1/devices/pre-1/labels", json={"set": {"site": "x"}},
                            headers=forged).status_code == 200
        actors = _actors(client, auth)
        assert actors and set(actors) == {"operator:ops"}, actors


def test_the_config_token_is_named_as_such(tmp_path: Path) -> None:
    for client, _ in _app(tmp_path, api_token="ewa_config-admin"):
        headers = {"Authorization": "Bearer ewa_config-admin", "X-Edgewise-Actor": "alice@host"}
        assert client.post("/api/v1/devices", json={"device_id": "pre-2"},
                           headers=headers).status_code == 201
        assert set(_actors(client, headers)) == {"operator:config:api_token"}


def test_without_tokens_the_header_is_an_unverified_claim(tmp_path: Path) -> None:
    for client, _ in _app(tmp_path):
        headers = {"X-Edgewise-Actor": "alice@host"}
        assert client.post("/api/v1/devices", json={"device_id": "pre-3"},
                           headers=headers).status_code == 201
        assert set(_actors(client, {})) == {"operator:api (unverified: alice@host)"}
