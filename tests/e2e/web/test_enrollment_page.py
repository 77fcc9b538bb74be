"""The dashboard's enrollment page in a real browser (headless Chromium through Playwright): a
real controller process on a real Mosquitto, with named API tokens, and two devices that asked
to enroll over HTTP on a manual-approval claim token.

The page lists both requests (with the group, class and labels each device would get); a read
token may look but its approval is refused with the reason; with the admin token the operator
approves one and rejects the other with a reason. The devices learn the decisions when they ask
again (a certificate, the reason), and the audit log names the admin token as the actor.
Screenshot: test-artifacts/dashboard-enrollments.png. Skips like the other browser tests without
Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.security.auth import TokenStore
from controller.security.claims import ClaimStore
from edgewise_wire.csr import csr_pem
from simulator.broker import BrokerProcess
from simulator.demo import start_controller, stop_process
from tests.e2e.web.test_dashboard_browser import _shot, browser_page

pytestmark = [pytest.mark.broker, pytest.mark.slow]

__all__ = ["browser_page"]

DEVICES = ("cam-line3-01", "cam-line3-02")


def _csr(device_id: str) -> str:
    return csr_pem(device_id, device_id.encode().ljust(32, b"k")[:32]).decode()


@pytest.fixture
def controller(fresh_broker: BrokerProcess, tmp_path: Path) -> Iterator[tuple[str, str, str, str]]:
    """A controller with an admin and a read token; (url, claim, admin token, read token)."""
    workdir = tmp_path / "controller"
    workdir.mkdir()
    tokens = TokenStore.for_data_dir(workdir)
    admin, reader = tokens.create("ops-anna", "admin"), tokens.create("wallboard", "read")
    claim = ClaimStore.for_data_dir(workdir).create_token(
        "line-3", group="line-3", quota=5, expires_in_s=3600, labels={"site": "oslo"},
        device_class="camera-v2", approval="manual")
    proc, url = start_controller(workdir, fresh_broker)
    try:
        yield url, claim, admin, reader
    finally:
        stop_process(proc)


def _enroll(url: str, claim: str, device_id: str) -> dict[str, Any]:
    r = httpx.post(f"{url}/api/v1/enroll", timeout=10,
                   json={"claim": claim, "device_id": device_id, "csr": _csr(device_id)})
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def _use_token(page: Any, token: str) -> None:
    page.wait_for_selector("#auth:not([hidden])")
    page.fill("#auth-token", token)
    page.click("#auth-form button[type=submit]")


def test_an_operator_approves_and_rejects_pending_enrollments(
        controller: tuple[str, str, str, str], browser_page: Any) -> None:
    url, claim, admin, reader = controller
    for device in DEVICES:
        assert _enroll(url, claim, device)["status"] == "pending"
    first, second = DEVICES
    page = browser_page

    # no token yet: the page asks for one; a read token shows the requests
    page.goto(f"{url}/dashboard/#/enrollments")
    _use_token(page, reader)
    table = "[data-testid=pending-enrollments]"
    for device in DEVICES:
        page.wait_for_selector(f"{table} tr[data-device='{device}']")
    row = page.locator(f"{table} tr[data-device='{first}']")
    assert "camera-v2" in row.inner_text() and "site=oslo" in row.inner_text()
    assert "group=line-3" in row.inner_text()
    _shot(page, "enrollments")

    # the read token may not decide: refused with the reason, nothing changes
    row.locator("button.approve").click()
    result = page.locator("[data-testid=enrollment-result]")
    # (a selector, not wait_for_function: the page's CSP forbids the eval that polling needs)
    page.wait_for_selector("[data-testid=enrollment-result]:has-text('needs an admin token')")
    assert f"{first} not approved" in result.inner_text()
    assert page.locator(f"{table} tr[data-device]").count() == 2
    assert _enroll(url, claim, first)["status"] == "pending"

    # with the admin token: approve one, reject the other with a reason
    _use_token(page, admin)
    page.wait_for_selector(f"{table} tr[data-device='{first}']")
    page.locator(f"{table} tr[data-device='{first}'] button.approve").click()
    page.wait_for_selector(f"{table} tr[data-device='{first}']", state="detached")
    page.wait_for_selector(f"[data-testid=enrollment-result]:has-text('Approved {first}')")
    reject_row = page.locator(f"{table} tr[data-device='{second}']")
    reject_row.locator("input.reason").fill("not on the order list")
    reject_row.locator("button.reject").click()
    page.wait_for_selector(f"{table} tr[data-device='{second}']", state="detached")
    page.wait_for_selector("[data-testid=enrollment-result]"
                           f":has-text('Rejected {second}: not on the order list')")
    page.wait_for_selector(f"{table} >> text=No enrollment request waits for approval.")
    _shot(page, "enrollments-decided")

    # the devices learn the decisions when they ask again
    issued = _enroll(url, claim, first)
    assert issued["status"] == "issued" and "BEGIN CERTIFICATE" in issued["certificate"]
    assert issued["device_class"] == "camera-v2"
    refused = _enroll(url, claim, second)
    assert (refused["status"], refused["reason"]) == ("rejected", "not on the order list")

    # the audit log names the admin token, not the read token that tried first
    audit = httpx.get(f"{url}/api/v1/audit", params={"action": "enrollment."}, timeout=10,
                      headers={"Authorization": f"Bearer {reader}"}).json()["entries"]
    assert [(e["action"], e["devices"], e["actor"]) for e in audit] == [
        ("enrollment.rejected", [second], "operator:ops-anna"),
        ("enrollment.approved", [first], "operator:ops-anna")]

    # only the expected refusals (the read token's 403, the first load's 401) reached the console
    unexpected = [e for e in page.errors
                  if "status of 401" not in e and "status of 403" not in e]
    assert not unexpected, page.errors
