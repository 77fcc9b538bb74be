"""The dashboard's experiment page in a real browser (headless Chromium through Playwright): a
real controller process, a simulated fleet on a real Mosquitto running a shadow experiment of a
better candidate; the page shows both arms, their accuracy over time, the difference with its
always-valid interval, the shadow's agreement and the verdict. Screenshot:
test-artifacts/dashboard-experiment.png (with EDGEWISE_UPDATE_DOCS=1 also docs/experiment.png,
which docs/experiments.md shows). Skips like the other browser test without Chromium."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from typing import Any

import pytest

from simulator.fleet import SimulatedFleet
from simulator.keys import controller_trusted_keys
from simulator.workload import Workload, load_dataset
from tests.e2e.rollouts.conftest import Models, env, models
from tests.e2e.web.test_dashboard_browser import _shot, _wait_for_line, browser_page
from tests.harness.controller_env import ControllerEnv, wait_registered, wait_status
from tests.harness.paths import REPO_ROOT
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker, pytest.mark.slow]

__all__ = ["browser_page", "env", "models"]


def test_the_experiment_page_shows_both_arms_over_time_and_the_verdict(
        env: ControllerEnv, models: Models, browser_page: Any) -> None:
    assert env.push(models.shuffled) == 1
    assert env.push(models.good) == 2
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    stop = asyncio.Event()

    async def fleet_run(started: asyncio.Future[str]) -> None:
        fleet = SimulatedFleet(env.broker.address, 3, env.workdir / "devices",
                               trusted_keys=controller_trusted_keys(env.workdir / "controller"),
                               metrics_window_s=1.0, telemetry_flush_interval_s=0.1)
        await fleet.start()
        workload = Workload(fleet, load_dataset("iris"), rate_per_device=15.0,
                            feedback_delay_s=0.1)
        try:
            await wait_registered(env, {a.device_id for a in fleet.agents})
            view = await asyncio.to_thread(env.create, model="iris", version=1, waves="100%",
                                           soak_seconds=0)
            await wait_status(env, view["id"], {"completed"}, 60)
            await wait_for_async(lambda: all(a.active is not None for a in fleet.agents), 30,
                                 "every device serving", interval=0.2)
            experiment = await asyncio.to_thread(env.client.start_experiment, {
                "mode": "shadow", "candidate": "iris:2", "control": "iris:1", "sample": 1.0})
            workload.start()
            started.set_result(experiment["id"])
            await stop.wait()
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise
        finally:
            await workload.stop()
            await fleet.stop(drain_timeout=1)

    started: asyncio.Future[str] = loop.create_future()
    running = asyncio.run_coroutine_threadsafe(fleet_run(started), loop)
    page = browser_page
    try:
        experiment_id = asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(asyncio.shield(started), 180), loop).result(timeout=200)
        page.goto(f"{env.url}/dashboard/#/experiments")
        page.wait_for_selector(f"[data-testid=experiments] a[href='#/experiments/{experiment_id}']")
        page.click(f"a[href='#/experiments/{experiment_id}']")
        page.wait_for_selector("[data-testid=arms] tr[data-arm=candidate]")
        for chart, series in (("experiment-accuracy", "candidate"),
                              ("experiment-accuracy", "control"),
                              ("experiment-effect", "difference"),
                              ("experiment-latency", "candidate")):
            # the charts bucket by the minute: a second point may be a whole minute away
            _wait_for_line(page, chart, series, timeout_s=150)
        page.wait_for_function(
            "() => document.querySelector('[data-testid=verdict]').textContent.includes('candidate better')",
            timeout=90_000)
        page.wait_for_selector("[data-testid=agreement]")
        assert "agreement" in page.inner_text("[data-testid=agreement]")
        assert "always-valid CI" in page.inner_text("[data-testid=experiment-test]")
        assert page.locator("[data-testid=experiment-effect] .threshold").count() == 1
        path = _shot(page, "experiment")
        if os.environ.get("EDGEWISE_UPDATE_DOCS") == "1":
            shutil.copyfile(path, REPO_ROOT / "docs" / "experiment.png")
        assert not page.errors, page.errors
    finally:
        loop.call_soon_threadsafe(stop.set)
        try:
            running.result(timeout=60)
        finally:
            loop.call_soon_threadsafe(loop.stop)
