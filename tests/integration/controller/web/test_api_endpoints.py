"""Every endpoint of controller/app/api.py and the dashboard's pages: status codes, auth refusals
(API token for changes, read token for views when the dashboard is not public), bad input.

The rollout, monitoring and security endpoints are tested by their own suites."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller.app.api import create_app
from controller.web.pages import STATIC_TYPES
from tests.harness.web_fleet import Fleet, make_controller, populate
from tests.integration.controller.store.conftest import build_manifest

ADMIN, READER = "admin-token-1", "read-token-1"
VIEWS = ["/api/v1/fleet/devices", "/api/v1/fleet/overview", "/api/v1/fleet/series",
         "/api/v1/devices/b-1/history", "/api/v1/devices/b-1/errors", "/api/v1/devices/b-1/series",
         "/api/v1/models", "/api/v1/models/iris/summary", "/api/v1/deployments",
         "/api/v1/deployments/dep-v2", "/metrics", "/api/v1/models/iris",
         "/api/v1/models/iris/versions/1/manifest", "/api/v1/telemetry/count",
         "/api/v1/drift/iris"]
PAGES = ["/", "/dashboard/", *[f"/dashboard/static/{name}" for name in STATIC_TYPES]]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _client(tmp: Path, **config: object) -> Iterator[TestClient]:
    c = make_controller(tmp, **config)
    try:
        populate(c, 1_800_000_000.0)
        with TestClient(create_app(c)) as client:
            yield client
    finally:
        c.db.dispose()


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Views only with a token: the API token or the read token."""
    yield from _client(tmp_path_factory.mktemp("private"), api_token=ADMIN, read_token=READER,
                       dashboard_public=False)


@pytest.fixture(scope="module")
def public_views(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Views opened to all (dashboard_public, an explicit choice), for tests that only read."""
    yield from _client(tmp_path_factory.mktemp("public"), api_token=ADMIN,
                       dashboard_public=True)


@pytest.fixture
def public(tmp_path: Path) -> Iterator[TestClient]:
    """Views open to all (dashboard_public), changes only with the API token; this test's
    own."""
    yield from _client(tmp_path, api_token=ADMIN, dashboard_public=True)


@pytest.mark.parametrize("path", VIEWS)
def test_private_views_need_a_read_or_api_token(private: TestClient, path: str) -> None:
    assert private.get(path).status_code == 401
    assert private.get(path, headers=_bearer("wrong")).status_code == 401
    assert private.get(path, headers=_bearer(READER)).status_code == 200
    assert private.get(path, headers=_bearer(ADMIN)).status_code == 200


@pytest.mark.parametrize("path", [*PAGES, "/api/v1/health"])
def test_the_dashboard_files_and_health_need_no_token(private: TestClient, path: str) -> None:
    r = private.get(path, follow_redirects=False)
    assert r.status_code in (200, 307), r.text


@pytest.mark.parametrize("path", VIEWS)
def test_public_views_need_no_token(public_views: TestClient, path: str) -> None:
    assert public_views.get(path).status_code == 200


def test_changes_need_the_api_token_not_the_read_token(tmp_path: Path) -> None:
    clients = _client(tmp_path, api_token=ADMIN, read_token=READER, dashboard_public=False)
    private = next(clients)
    body = {"model": "iris", "version": 1, "devices": ["b-1"]}
    assert private.post("/api/v1/deployments", json=body).status_code == 401
    r = private.post("/api/v1/deployments", json=body, headers=_bearer(READER))
    assert r.status_code == 403
    r = private.post("/api/v1/deployments", json=body, headers=_bearer(ADMIN))
    assert r.status_code == 201, r.text
    assert r.json()["devices"] == ["b-1"] and r.json()["version"] == 1
    clients.close()


def test_public_views_still_refuse_changes_without_the_api_token(public: TestClient) -> None:
    r = public.post("/api/v1/deployments", json={"model": "iris"})
    assert r.status_code == 401


@pytest.mark.parametrize("body, status", [
    ({"model": "wine"}, 404), ({"model": "iris", "version": 9}, 404),
    ({"model": ""}, 422), ({"model": "iris", "version": 0}, 422), ({}, 422),
    ({"model": "iris", "devices": "b-1"}, 422),
])
def test_bad_deployments(public_views: TestClient, body: dict[str, object],
                         status: int) -> None:
    assert public_views.post("/api/v1/deployments", json=body, headers=_bearer(ADMIN)).status_code \
        == status


def test_a_deployment_shows_its_progress(public: TestClient) -> None:
    r = public.post("/api/v1/deployments", json={"model": "iris", "version": 2,
                                                 "devices": ["b-1", "o-1"]},
                    headers=_bearer(ADMIN))
    assert r.status_code == 201, r.text
    progress = public.get(f"/api/v1/deployments/{r.json()['deployment_id']}").json()
    assert (progress["targeted"], progress["active"], progress["waiting"]) == (2, 0, 2)
    assert progress["offline"] == 1 and not progress["finished"]


def _upload(client: TestClient, name: str, manifest: str, artifact: bytes,
            token: str | None = ADMIN) -> int:
    return client.post(f"/api/v1/models/{name}/versions", data={"manifest": manifest},
                       files={"artifact": ("a.bin", artifact, "application/octet-stream")},
                       headers=_bearer(token) if token else {}).status_code


def test_pushing_a_version(public: TestClient) -> None:
    artifact = b"iris-v3"
    manifest = json.dumps(build_manifest(artifact).to_dict())
    assert _upload(public, "iris", manifest, artifact, token=None) == 401
    assert _upload(public, "iris", manifest, artifact, token=READER) == 401  # not a token here
    assert _upload(public, "iris", "{not json", artifact) == 422
    assert _upload(public, "iris", json.dumps({"model": "iris"}), artifact) == 422
    assert _upload(public, "wine", manifest, artifact) == 422  # manifest names another model
    assert _upload(public, "iris", manifest, b"other bytes") == 422  # hash mismatch
    assert _upload(public, "iris", manifest, artifact) == 201
    assert public.get("/api/v1/models/iris").json()["versions"][-1]["version"] == 3


def test_model_reads(public_views: TestClient) -> None:
    model = public_views.get("/api/v1/models/iris").json()
    assert [v["version"] for v in model["versions"]] == [1, 2]
    assert public_views.get("/api/v1/models/wine").status_code == 404
    manifest = public_views.get("/api/v1/models/iris/versions/2/manifest").json()
    assert manifest["version"] == 2 and manifest["reference_profile"]["bins"] == 10
    assert public_views.get("/api/v1/models/iris/versions/7/manifest").status_code == 404
    assert public_views.get("/api/v1/models/iris/versions/two/manifest").status_code == 422


def test_health_and_telemetry_count(public_views: TestClient) -> None:
    health = public_views.get("/api/v1/health").json()
    assert health["status"] == "ok" and health["mqtt_connected"] is False
    assert public_views.get("/api/v1/telemetry/count").json() == {"count": 24}
    assert public_views.get("/api/v1/telemetry/count", params={"device_id": "b-1",
                                                          "kind": "prediction"}).json() == \
        {"count": 10}


def test_dashboard_page_and_files(public_views: TestClient) -> None:
    root = public_views.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/dashboard/"
    assert public_views.get("/dashboard", follow_redirects=False).status_code == 307
    page = public_views.get("/dashboard/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'src="static/app.js"' in page.text and 'href="static/app.css"' in page.text
    for name, media in STATIC_TYPES.items():
        r = public_views.get(f"/dashboard/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"] == media
        assert r.headers["x-content-type-options"] == "nosniff"
    assert public_views.get("/dashboard/static/secret.py").status_code == 404
    assert public_views.get("/dashboard/static/..%2Fpages.py").status_code == 404


def test_the_dashboard_loads_nothing_from_elsewhere(public_views: TestClient) -> None:
    """No CDN: every URL in the page's files is relative or this controller's own."""
    for path in PAGES[1:]:
        text = public_views.get(path).text.replace("http://www.w3.org/2000/svg", "")  # an XML name
        assert not re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text), path


def test_openapi_documents_the_views(fleet: Fleet) -> None:
    spec = fleet.client.get("/openapi.json").json()
    paged = spec["paths"]["/api/v1/fleet/devices"]["get"]
    names = {p["name"] for p in paged["parameters"]}
    assert {"limit", "offset", "q", "online", "model", "state", "selector", "sort"} <= names
    assert "DevicePage" in json.dumps(paged["responses"]["200"])
    assert "X-Total-Count" in spec["paths"]["/api/v1/models"]["get"]["responses"]["200"]["headers"]
    for path in ("/api/v1/fleet/overview", "/api/v1/devices/{device_id}/series",
                 "/api/v1/models/{name}/summary", "/api/v1/deployments/{deployment_id}",
                 "/api/v1/devices/{device_id}/history", "/metrics"):
        assert path in spec["paths"], path
