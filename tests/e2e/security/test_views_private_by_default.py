"""`edgewise controller serve --api-token T` keeps its views private: every GET of the API, the
dashboard's data and /metrics need a token (read or admin), while /api/v1/health stays open for
load balancers. Public views are an explicit choice (``--public-dashboard`` or
``dashboard_public = true``), and even then a change needs the admin token.

Once the opposite: ``dashboard_public`` defaulted to true with no flag, so a controller started
with a token still answered every view to anyone, contradicting docs/security.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from simulator.broker import BrokerProcess
from simulator.demo import start_controller, stop_process

pytestmark = [pytest.mark.broker]

TOKEN = "views-admin-token"
VIEWS = ["/api/v1/devices", "/api/v1/models", "/api/v1/fleet/overview", "/api/v1/deployments",
         "/api/v1/rollouts", "/api/v1/audit", "/api/v1/alerts", "/metrics", "/openapi.json"]


def _serve(broker: BrokerProcess, workdir: Path, *flags: str) -> Iterator[httpx.Client]:
    proc, url = start_controller(workdir, broker, extra_args=["--api-token", TOKEN, *flags])
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            yield http
    finally:
        stop_process(proc)


def test_views_need_a_token_by_default(broker: BrokerProcess, tmp_path: Path) -> None:
    for http in _serve(broker, tmp_path / "private"):
        assert http.get("/api/v1/health").status_code == 200
        refused = {path: http.get(path).status_code for path in VIEWS
                   if path != "/openapi.json"}
        assert set(refused.values()) == {401}, refused
        auth = {"Authorization": f"Bearer {TOKEN}"}
        allowed = {path: http.get(path, headers=auth).status_code for path in VIEWS}
        assert set(allowed.values()) == {200}, allowed


def test_public_views_are_an_explicit_choice(broker: BrokerProcess, tmp_path: Path) -> None:
    for http in _serve(broker, tmp_path / "public", "--public-dashboard"):
        opened = {path: http.get(path).status_code for path in VIEWS}
        assert set(opened.values()) == {200}, opened
        change = http.post("/api/v1/deployments", json={"model": "iris"})
        assert change.status_code == 401, change.text
