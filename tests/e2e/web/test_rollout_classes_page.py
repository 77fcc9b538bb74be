"""Device classes on the dashboard, in a real browser (headless Chromium through Playwright): a
real controller process, real Mosquitto, and simulated agents of two classes that report their
class. A model version built for one class is rolled out to both; the rollout page shows the
version's class and lists the devices of the other class as skipped, with the reason, and the
fleet page shows each device's class. Screenshots: test-artifacts/dashboard-rollout-classes.png
and dashboard-fleet-classes.png. Skips like the other browser tests without Chromium."""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from simulator.fleet import DeviceGroup, SimulatedFleet
from tests.e2e.rollouts.conftest import Models, env, models
from tests.e2e.web.test_dashboard_browser import _shot, browser_page
from tests.harness.controller_env import ControllerEnv, wait_registered, wait_status
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker, pytest.mark.slow]

__all__ = ["browser_page", "env", "models"]

PI, CAMERA = "pi4", "camera-v2"
GROUPS = [DeviceGroup("pi", 2, {"hw": "pi"}, device_class=PI),
          DeviceGroup("cam", 2, {"hw": "cam"}, device_class=CAMERA)]


def test_the_rollout_page_shows_the_version_class_and_the_skipped_devices(
        env: ControllerEnv, models: Models, browser_page: Any) -> None:
    for_pi = dataclasses.replace(models.good, manifest=dataclasses.replace(
        models.good.manifest, device_class=PI))
    assert env.push(for_pi) == 1

    async def rolled_out() -> tuple[set[str], set[str]]:
        """Every device reports its class, and the pi4 devices run iris:1; the fleet stops
        after (the rollout and the classes stay stored)."""
        fleet = SimulatedFleet.from_groups(env.broker.address, GROUPS, env.workdir / "devices")
        await fleet.start()
        try:
            await wait_registered(env, {a.device_id for a in fleet.agents})
            await wait_for_async(lambda: all(d.get("device_class") for d in env.client.devices()),
                                 30, "every device's class", interval=0.2, in_thread=True)
            view = await asyncio.to_thread(env.create, model="iris", version=1,
                                           name="iris-for-pi4", waves="100%", soak_seconds=0)
            await wait_status(env, view["id"], {"completed"}, 60)
        finally:
            await fleet.stop(drain_timeout=2)
        return ({a.device_id for a in fleet.agents if a.config.device_class == PI},
                {a.device_id for a in fleet.agents if a.config.device_class == CAMERA})

    # the browser's driver runs an event loop on this thread: the fleet runs on a thread of its own
    with ThreadPoolExecutor(1) as pool:
        pis, cameras = pool.submit(asyncio.run, rolled_out()).result(timeout=180)
    page = browser_page
    page.goto(f"{env.url}/dashboard/#/rollouts/1")
    page.wait_for_selector("[data-testid=rollout-skipped-devices] tbody tr[data-device]")
    assert page.inner_text("[data-testid=rollout-device-class]") == PI
    assert page.inner_text("[data-testid=rollout-skipped-count]") == \
        f"2 devices of another class skipped: the version is for {PI}."
    skipped = page.locator("[data-testid=rollout-skipped-devices] tbody tr[data-device]")
    assert sorted(skipped.nth(i).get_attribute("data-device") for i in range(skipped.count())) \
        == sorted(cameras)
    for camera in cameras:
        row = page.inner_text(f"[data-testid=rollout-skipped-devices] tr[data-device='{camera}']")
        assert CAMERA in row and f"other_class: the device is '{CAMERA}'" in row, row
    assert not pis & set(page.inner_text("[data-testid=rollout-skipped]").split())
    assert "2/2 devices run it" in page.inner_text("[data-testid=rollout-progress]")
    _shot(page, "rollout-classes")

    # the fleet page: a class column, each device's class in it
    page.click("nav a[data-nav=fleet]")
    page.wait_for_selector("[data-testid=devices] th:text-is('Class')")
    page.wait_for_selector("[data-testid=devices] tbody tr a[href^='#/devices/']")
    heads = page.locator("[data-testid=devices] thead th").all_text_contents()
    column = heads.index("Class")
    rows = page.locator("[data-testid=devices] tbody tr")
    shown = {rows.nth(i).locator("td").nth(0).text_content():
             rows.nth(i).locator("td").nth(column).text_content() for i in range(rows.count())}
    assert shown == {**{d: PI for d in pis}, **{d: CAMERA for d in cameras}}, shown
    _shot(page, "fleet-classes")
    assert not page.errors, page.errors
