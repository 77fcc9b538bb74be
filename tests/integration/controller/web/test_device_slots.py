"""A device's staged artifact and previous slot (instant rollback), as its agent
reports them, in the REST views, `edgewise device show` (text and --json) and the dashboard's
device page. One real HTTP server (uvicorn on a free port) over a controller whose fleet went
in through the store's write path; no broker needed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from controller.app.cli import cli
from controller.fleet.render import format_device
from edgewise_wire import ModelRef, Reported
from tests.harness.api_server import serving
from tests.harness.web_fleet import SHA, make_controller, populate

SLOTS = ("staged_model", "staged_version", "staged_sha256", "previous_model",
         "previous_version", "previous_sha256")


@dataclass
class Server:
    url: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The known fleet plus ``s-1``, in probation on iris:2 with iris:1 in its previous slot,
    ``s-2`` with iris:2 verified in its standby slot, and ``pre-1``, registered, never seen."""
    c = make_controller(tmp_path_factory.mktemp("slots"))
    now = time.time()
    populate(c, now)
    c.fleet.set_reported("s-1", Reported(
        state="probation", active=ModelRef("iris", 2, SHA[2]),
        previous=ModelRef("iris", 1, SHA[1]), deployment_id="dep-v2", ts=now - 30))
    c.fleet.set_reported("s-2", Reported(
        state="staged", active=ModelRef("iris", 1, SHA[1]), target=ModelRef("iris", 2, SHA[2]),
        staged=ModelRef("iris", 2, SHA[2]), deployment_id="dep-v2", ts=now - 20))
    c.rollouts.devices.register("pre-1", {"site": "oslo"}, "operator:test")
    with serving(c) as url:
        yield Server(url)
    c.db.dispose()


def get(server: Server, path: str, **params: Any) -> Any:
    response = httpx.get(f"{server.url}/api/v1{path}", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_device_detail_and_list_carry_the_slots(server: Server) -> None:
    s1 = get(server, "/devices/s-1")
    assert {k: s1[k] for k in SLOTS} == {
        "staged_model": None, "staged_version": None, "staged_sha256": None,
        "previous_model": "iris", "previous_version": 1, "previous_sha256": SHA[1]}
    s2 = get(server, "/devices/s-2")
    assert (s2["state"], s2["staged_model"], s2["staged_version"], s2["staged_sha256"]) == (
        "staged", "iris", 2, SHA[2])
    assert s2["previous_model"] is None
    # the paged list of the dashboard's fleet page: the same fields, documented in DeviceOut
    page = get(server, "/fleet/devices", q="s-")
    assert [(d["device_id"], d["staged_version"], d["previous_version"])
            for d in page["items"]] == [("s-1", None, 1), ("s-2", 2, None)]
    # devices of an agent from before slots and signed updates, or never seen, have them as null
    for device_id in ("b-1", "pre-1"):
        row = get(server, f"/devices/{device_id}")
        assert all(k in row and row[k] is None for k in SLOTS), (device_id, row)


def test_openapi_documents_the_slots(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    props = spec["components"]["schemas"]["DeviceOut"]["properties"]
    assert set(SLOTS) <= set(props)
    assert "instant rollback" in props["previous_model"]["description"]


def test_device_show_prints_and_returns_the_slots(server: Server) -> None:
    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--controller", server.url, "device", "show", *args])
        assert result.exit_code == 0, result.output
        return result.output

    out = run("s-1")
    assert "\nprevious    iris:1  (previous slot: instant rollback)\n" in out
    assert "\nstaged " not in out
    out = run("s-2")
    assert "\nstaged      iris:2  (verified, waiting to activate)\n" in out
    assert "\nprevious " not in out
    assert "state staged" in out
    view = json.loads(run("s-1", "--json"))
    assert (view["device"]["previous_model"], view["device"]["previous_version"],
            view["device"]["previous_sha256"]) == ("iris", 1, SHA[1])
    assert view["device"]["staged_model"] is None
    assert json.loads(run("s-2", "--json"))["device"]["staged_version"] == 2


def text(page: Any, testid: str) -> str:
    """An element's text with its layout's line breaks as spaces (the facts are flex rows)."""
    return " ".join(page.inner_text(f"[data-testid={testid}]").split())


def test_the_dashboard_device_page_shows_the_slots(server: Server) -> None:
    from tests.e2e.web.test_dashboard_browser import BROWSER_ARGS, CHROMIUM, _require_browser

    sync_playwright = _require_browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{server.url}/dashboard/#/devices/s-1")
            page.wait_for_selector("[data-testid=previous-slot]")
            assert text(page, "previous-slot") == "iris:1 (instant rollback)"
            assert page.locator("[data-testid=staged-slot]").count() == 0
            assert "probation" in page.inner_text(".device-title")
            page.goto(f"{server.url}/dashboard/#/devices/s-2")
            page.wait_for_selector("[data-testid=staged-slot]")
            assert text(page, "staged-slot") == "iris:2 (verified, waiting to activate)"
            assert page.locator("[data-testid=previous-slot]").count() == 0
            assert errors == []
        finally:
            browser.close()


def test_no_slot_lines_for_a_device_without_slots() -> None:
    """The text view of a device that reports no slots (an older agent) is as before."""
    view = {"device": {"device_id": "x", "online": True, "state": "active",
                       "active_model": "iris", "active_version": 1},
            "recent": {"predictions": 0, "errors": 0, "accuracy": None,
                       "mean_latency_ms": None, "p95_latency_ms": None, "drift_psi": None,
                       "drift_available": False},
            "history": [], "errors": []}
    text = format_device(view, 3600)
    assert "staged" not in text and "previous" not in text
