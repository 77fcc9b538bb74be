"""The device health views over REST and /metrics, on the known fleet (tests/harness/web_fleet.py):
b-1 heats up to 84 degC, b-2 serves a version with a larger session."""

from __future__ import annotations

import pytest

from tests.harness.web_fleet import MIB, Fleet


def test_a_devices_health_has_windows_alerts_and_its_versions_cost(fleet: Fleet) -> None:
    view = fleet.client.get("/api/v1/devices/b-1/health", params={"window": 7200}).json()
    assert len(view["windows"]) == 12
    assert view["windows"][0]["window_end"] < view["windows"][-1]["window_end"]
    assert view["latest"]["temp_c"] == 82.0
    assert view["latest"]["gauges"]["temp_c"] == [80.0, 81.0, 82.0]
    [alert] = view["alerts"]
    assert alert["kind"] == "overheating" and "82.0 degC" in alert["explanation"]
    [cost] = view["versions"]
    assert (cost["model"], cost["version"], cost["session_bytes"]) == ("iris", 1, 4 * MIB)
    assert cost["cpu_ms_per_prediction"] == pytest.approx(0.5)
    short = fleet.client.get("/api/v1/devices/b-1/health", params={"window": 750}).json()
    assert len(short["windows"]) == 2
    assert short["alerts"] == view["alerts"]  # judged on the look-back, not what is shown


def test_fleet_health_lists_each_devices_newest_window(fleet: Fleet) -> None:
    body = fleet.client.get("/api/v1/health/devices").json()
    assert set(body["devices"]) == {"b-1", "b-2"}
    assert body["devices"]["b-2"]["session_bytes"] == 9 * MIB
    assert [(a["device_id"], a["kind"]) for a in body["alerts"]] == [("b-1", "overheating")]
    assert body["thresholds"]["temp_c"] == 80.0


def test_fleet_health_of_a_page_of_devices(fleet: Fleet) -> None:
    body = fleet.client.get("/api/v1/health/devices",
                            params={"ids": "b-2,o-1", "alerts": "false"}).json()
    assert set(body["devices"]) == {"b-2"} and body["alerts"] == []
    body = fleet.client.get("/api/v1/health/devices", params={"ids": "b-1"}).json()
    assert [a["device_id"] for a in body["alerts"]] == ["b-1"]


def test_an_unknown_device_is_404_and_a_malformed_id_422(fleet: Fleet) -> None:
    assert fleet.client.get("/api/v1/devices/nobody/health").status_code == 404
    assert fleet.client.get("/api/v1/devices/a+b/logs").status_code == 422


def test_logs_without_a_broker_connection_say_so(fleet: Fleet) -> None:
    response = fleet.client.get("/api/v1/devices/b-1/logs", params={"timeout": 0.5})
    assert response.status_code == 409
    assert "no broker connection" in response.json()["detail"]


def test_health_gauges_per_group_for_prometheus(fleet: Fleet) -> None:
    text = fleet.client.get("/metrics", params={"window": 86400}).text
    assert 'edgewise_health_devices{group="berlin"} 2.0' in text
    assert 'edgewise_health_rss_bytes{group="berlin",stat="max"} 7.340032e+07' in text  # 70 MiB
    assert 'edgewise_health_temperature_celsius{group="berlin",stat="max"} 82.0' in text
    assert 'edgewise_health_alerts_firing{group="berlin",kind="overheating"} 1.0' in text
    assert "b-1" not in text.split("edgewise_health_devices")[1]  # no per-device labels
