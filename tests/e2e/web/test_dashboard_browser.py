"""The dashboard in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright)
loads the page of a real controller process with a simulated fleet on a real Mosquitto, and
shows the devices and versions, a device's drift chart and its health (resources over time, the
model's cost, recent log lines), the fleet's per-feature drift charts of
a version with its version-change and alert markers, and a rollout's progress.

Screenshots go to test-artifacts/dashboard-*.png; with EDGEWISE_UPDATE_DOCS=1 the overview's also
replaces the README's docs/dashboard.png, with the figures it shows in docs/dashboard.json
(tests/harness/dashboard_figures.py). Without chromium or Playwright the test skips with the
reason, except under CI, where that is a failure (scripts/test installs both).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator.broker import BrokerProcess
from tests.harness.dashboard_figures import SCREENSHOT, problems, read_overview, write_sidecar
from tests.harness.paths import REPO_ROOT
from tests.harness.web_scenario import DRIFTING, FLEET_SHIFTED, STEADY, start_scenario

pytestmark = [pytest.mark.broker, pytest.mark.slow]

CHROMIUM = os.environ.get("EDGEWISE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage"]
TIMEOUT_MS = 20_000


def _require_browser() -> Any:
    reasons = []
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        reasons.append(f"chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reasons.append("playwright is not installed (pip install -e '.[dev]')")
        sync_playwright = None
    if reasons:
        message = "; ".join(reasons)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return sync_playwright


@pytest.fixture
def browser_page() -> Iterator[Any]:
    sync_playwright = _require_browser()
    profile = tempfile.mkdtemp(prefix="edgewise-chromium-")
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS,
                viewport={"width": 1440, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.errors = errors
            yield page
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _wait_for_line(page: Any, chart: str, series: str, timeout_s: float = 40.0) -> None:
    """Until the chart's series is a line through at least two points (data accumulates while
    the page polls)."""
    selector = f"[data-testid={chart}] svg .series[data-series='{series}'] path.line"
    page.wait_for_function(
        "s => { const p = document.querySelector(s); return !!p && p.getAttribute('d').includes('L'); }",
        arg=selector, timeout=timeout_s * 1000)


def _shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _overview_shot(page: Any) -> None:
    """The fleet overview's screenshot with the figures it shows, read before and after it (the
    page refreshes itself: a shot between two different readings is taken again). The drift
    tile must agree with the alerts listed. With EDGEWISE_UPDATE_DOCS=1 the shot becomes the
    README's docs/dashboard.png and its figures docs/dashboard.json."""
    for _ in range(5):
        before = read_overview(page)
        path = _shot(page, "fleet")
        if read_overview(page) == before:
            break
    else:
        pytest.fail("the overview's figures kept changing while it was photographed")
    assert not problems(before), problems(before)
    if os.environ.get("EDGEWISE_UPDATE_DOCS") == "1":
        shutil.copyfile(path, SCREENSHOT)
        write_sidecar(before)


def _wait_for_series(page: Any, selector: str) -> None:
    """Until the series under ``selector`` is a line through at least two points."""
    page.wait_for_function(
        "s => { const p = document.querySelector(s); return !!p && p.getAttribute('d').includes('L'); }",
        arg=f"{selector} path.line", timeout=60_000)


def test_dashboard_shows_the_fleet_a_drift_chart_and_a_rollout(
        fresh_broker: BrokerProcess, tmp_path: Path, browser_page: Any) -> None:
    # a broker of its own: the controller must not learn of other tests' retained devices.
    # The fleet runs on an event loop of its own thread while this one drives the browser.
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        scenario = asyncio.run_coroutine_threadsafe(
            start_scenario(fresh_broker, tmp_path, devices=8, serve_seconds=24.0, rate=12.0),
            loop).result(timeout=180)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        raise
    page = browser_page
    try:
        page.goto(f"{scenario.url}/dashboard/")
        # fleet overview: every device, its version, the versions in use
        page.wait_for_selector("[data-testid=devices] tbody tr a[href='#/devices/web-0000']")
        rows = page.locator("[data-testid=devices] tbody tr")
        assert rows.count() == 8
        table = page.inner_text("[data-testid=devices]")
        assert "web-0007" in table and "iris:1" in table and "iris:2" in table
        assert page.inner_text("[data-testid=kpi-devices] .kpi-value") == "8"
        assert page.inner_text("[data-testid=kpi-online] .kpi-value") == "8"
        versions = page.inner_text("[data-testid=versions-in-use]")
        assert "iris:1" in versions and "iris:2" in versions
        page.wait_for_selector("[data-testid=fleet-activity] svg .series rect")
        page.wait_for_selector("[data-testid=groups] tbody tr")
        assert {"berlin", "lisbon", "oslo"} <= set(page.inner_text("[data-testid=groups]").split())
        _overview_shot(page)

        # a drifting device over the last 15 minutes (15 s buckets): its drift chart draws a
        # PSI line of several points, above the 0.1 mark; latency and accuracy lines too
        device = DRIFTING[0]
        page.click(f"a[href='#/devices/{device}']")
        page.click(".segmented button:text('15 min')")
        for chart, series in (("drift-chart", "PSI"), ("latency-chart", "mean"),
                              ("accuracy-chart", "accuracy")):
            _wait_for_line(page, chart, series)
        assert page.locator("[data-testid=drift-chart] .threshold").count() == 1
        psi = float(page.inner_text(".kpi:has(.kpi-label:text('Drift')) .kpi-value"))
        assert psi > 0.1, psi
        assert "active" in page.inner_text("[data-testid=history]")
        _shot(page, "device")
        # its health: memory, CPU and disk over time from the agent's health windows (this
        # host has no thermal zone the simulated devices read: the chart says so), what the
        # model version cost on it, and its recent log lines asked over MQTT
        for chart, series in (("health-memory-chart", "RSS"), ("health-cpu-chart", "CPU"),
                              ("health-disk-chart", "free")):
            _wait_for_line(page, chart, series)
        page.wait_for_selector("[data-testid=health-costs] tbody tr td.mono")
        assert "iris:" in page.inner_text("[data-testid=health-costs]")
        assert "Newest window" in page.inner_text("[data-testid=health-facts]")
        page.click("[data-testid=fetch-logs]")
        page.wait_for_selector("[data-testid=device-logs] table, [data-testid=device-logs] p")
        _shot(page, "device-health")

        # which feature drifted across the fleet: from the overview's versions in use to
        # iris:1's charts over the last 5 minutes (5 s buckets). FLEET_SHIFTED moved on every
        # device halfway through serving: its PSI goes over its threshold, drift alerts fire
        # (red markers), and the rollout moved a berlin device off iris:1 (a version marker)
        page.click("nav a[data-nav=fleet]")
        # the device table has health columns once devices report health
        page.wait_for_selector("[data-testid=devices] th:has-text('Memory')")
        assert "°C" in page.inner_text("[data-testid=devices]")
        page.click("[data-testid=versions-in-use] a[href='#/models/iris/1']")
        page.click(".segmented button:text('5 min')")
        drift = "[data-testid=feature-drift]"
        chart = f"{drift} [data-testid=drift-feature-chart]"
        shifted, steady = (f"{chart}[data-feature='{name}']" for name in (FLEET_SHIFTED, STEADY))
        _wait_for_series(page, f"{shifted} svg .series[data-series='PSI']")
        _wait_for_series(page, f"{steady} svg .series[data-series='PSI']")
        page.wait_for_selector(f"{shifted} svg .series[data-series='over threshold'] path",
                               timeout=60_000)
        page.wait_for_selector(f"{drift} svg .marker[data-kind=alert_fired]", timeout=60_000)
        page.wait_for_selector(f"{drift} svg .marker[data-kind=version_stopped]")
        assert page.locator(f"{shifted} svg .series[data-series='threshold']").count() == 1
        assert page.locator(chart).count() == 5  # four features and the prediction
        assert page.locator(f"{drift} [data-testid=drift-show-all]").count() == 0
        assert page.locator(f"{drift} [data-testid=drift-version]").input_value() == "1"
        markers = page.inner_text(f"{drift} [data-testid=drift-marker-table]")
        assert "drift alert fired on" in markers and "iris:1 stopped on web-" in markers
        _shot(page, "drift")
        # the label-free estimate beside the measured accuracy, with its interval and what it
        # cannot see
        versions = page.inner_text("[data-testid=model-versions]").lower()
        assert "est. accuracy, no labels" in versions and "log loss" in versions
        page.wait_for_selector("[data-testid=estimate-note]", timeout=30_000)
        assert "cannot see concept drift" in page.inner_text("[data-testid=estimate-note]")

        # the rollout: its first wave (one berlin device) runs iris:2
        page.click("nav a[data-nav=rollouts]")
        page.wait_for_selector("[data-testid=rollouts] a")
        assert "iris-v2-berlin" in page.inner_text("[data-testid=rollouts]")
        page.click("[data-testid=rollouts] a")
        page.wait_for_selector("[data-testid=rollout-progress]")
        progress = page.inner_text("[data-testid=rollout-progress]")
        assert "1/3 devices run it" in progress and "wave 1 of 2" in progress, progress
        waves = page.inner_text("[data-testid=waves]")
        assert "current" in waves and "waiting" in waves
        # the audit trail is fetched after the rollout itself: wait for it to be drawn
        page.wait_for_function(
            "() => (document.querySelector('[data-testid=audit]')?.innerText || '')"
            ".includes('rollout.created')")
        page.wait_for_selector("[data-testid=gates] tbody tr td.mono")
        _shot(page, "rollout")
        assert not page.errors, page.errors
    finally:
        asyncio.run_coroutine_threadsafe(scenario.stop(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
