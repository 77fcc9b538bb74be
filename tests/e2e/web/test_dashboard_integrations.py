"""The dashboard in a real browser (headless Chromium through Playwright, as
test_dashboard_browser.py) shows what operators did to alerts (acknowledged, silenced) and the
MLflow lineage of a model version."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from controller.monitoring import AlertRules
from edgewise_wire import ModelRef, Reported
from tests.e2e.web.test_dashboard_browser import browser_page  # noqa: F401 -- the fixture
from tests.harness.api_server import serving
from tests.harness.web_fleet import make_controller
from tests.integration.controller.store.conftest import build_manifest

pytestmark = [pytest.mark.slow]


def test_alert_marks_and_mlflow_lineage_show(browser_page: Any, tmp_path: Path) -> None:  # noqa: F811
    page = browser_page
    c = make_controller(tmp_path / "c")
    try:
        manifest = dataclasses.replace(build_manifest(b"artifact-v1"), source={
            "framework": "sklearn", "mlflow": {
                "uri": "models:/iris@champion", "registered_model": "iris",
                "registered_version": 7, "alias": "champion", "run_id": "4f1c0a9b2c3d4e5f",
                "flavour": "sklearn", "metrics": {"accuracy": 0.97}}})
        c.registry.register(manifest, b"artifact-v1")
        now = time.time()
        for device in ("pi-1", "pi-2"):
            c.fleet.set_reported(device, Reported(state="active", active=ModelRef(
                "iris", 1, "a" * 64), ts=now - 3600))
        events = {e.device_id: e for e in c.alerts.evaluate(now, AlertRules(silent_after_s=60))}
        history = {r["device_id"]: r["id"] for r in c.alerts.history()}
        assert set(events) == {"pi-1", "pi-2"}
        c.alert_marks.ack(history["pi-1"], "ops@host", now)
        c.alert_marks.silence(c.alert_marks.matchers_for_event(history["pi-2"]),
                              starts_at=now, duration_s=3600, by="ops@host")
        with serving(c) as url:
            page.goto(f"{url}/dashboard/#/")
            alerts = page.locator("[data-testid=alerts]")
            alerts.locator("li").first.wait_for()
            page.wait_for_function(
                "() => document.querySelector('[data-testid=alerts]').innerText.includes('acked by')")
            text = alerts.inner_text()
            assert "acked by ops@host" in text and "silenced" in text
            page.goto(f"{url}/dashboard/#/models/iris")
            lineage = page.locator("[data-testid=mlflow-lineage]")
            lineage.wait_for()
            assert lineage.inner_text() == "MLflow iris v7 @champion · run 4f1c0a9b"
            assert lineage.get_attribute("title") == "accuracy 0.97"
            assert not page.errors, page.errors
    finally:
        c.db.dispose()
