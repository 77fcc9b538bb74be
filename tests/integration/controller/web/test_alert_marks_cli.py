"""`edgewise alerts ack|silence|silences|unsilence` against a real HTTP server, on SQLite and
PostgreSQL: stored, shown in `edgewise alerts` and the dashboard's overview."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from controller.app.cli import cli
from controller.monitoring import AlertRules
from edgewise_wire import ModelRef, Reported
from tests.harness.api_server import serving
from tests.harness.web_fleet import make_controller


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    db_url = None if request.param == "sqlite" else request.getfixturevalue("pg_module_url")
    if db_url is not None:  # the module's database, emptied of the previous test's schema
        engine = sa.create_engine(db_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        engine.dispose()
    c = make_controller(tmp_path / "c", db_url=db_url)
    now = time.time()
    for device in ("pi-1", "pi-2"):
        c.fleet.set_reported(device, Reported(state="active", active=ModelRef("iris", 1, "a" * 64),
                                              ts=now - 3600))
    c.alerts.evaluate(now, AlertRules(silent_after_s=60))
    with serving(c) as url:
        yield url
    c.db.dispose()


def run(url: str, *args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, ["--controller", url, *args])


def test_ack_silence_list_and_unsilence(url: str) -> None:
    rows = json.loads(run(url, "alerts", "--json").output)
    ids = {r["device_id"]: r["event_id"] for r in rows}
    assert set(ids) == {"pi-1", "pi-2"}
    acked = run(url, "alerts", "ack", str(ids["pi-1"]), "--comment", "on it")
    assert acked.exit_code == 0, acked.output
    assert f"acknowledged silent alert on pi-1 (event {ids['pi-1']})" in acked.output
    silenced = run(url, "alerts", "silence", str(ids["pi-2"]), "--for", "2h", "--json")
    assert silenced.exit_code == 0, silenced.output
    silence = json.loads(silenced.output)
    assert silence["text"] == "kind=silent, device=pi-2"
    assert 7199 < silence["ends_at"] - silence["starts_at"] < 7201
    by_matcher = run(url, "alerts", "silence", "--matcher", "model=iris", "--for", "30m")
    assert by_matcher.exit_code == 0 and "model=iris" in by_matcher.output
    table = run(url, "alerts")
    assert table.exit_code == 7
    assert "FIRING [acked by" in table.output and "silenced (#" in table.output
    listed = json.loads(run(url, "alerts", "silences", "--json").output)
    assert len(listed) == 2
    ended = run(url, "alerts", "unsilence", str(listed[1]["id"]))
    assert ended.exit_code == 0 and "ended" in ended.output
    assert len(json.loads(run(url, "alerts", "silences", "--json").output)) == 1
    overview = run(url, "alerts", "--json")
    marked = {r["device_id"]: r for r in json.loads(overview.output)}
    assert marked["pi-1"]["acked_by"] and marked["pi-2"]["silenced_by"] == [silence["id"]]


def test_bad_input_gets_one_line_errors(url: str) -> None:
    neither = run(url, "alerts", "silence")
    assert neither.exit_code == 2 and "give an alert ID or --matcher" in neither.output
    bad = run(url, "alerts", "silence", "--matcher", "colour=red")
    assert bad.exit_code == 1 and "label 'colour' is not one of" in bad.output
    unknown = run(url, "alerts", "ack", "999999")
    assert unknown.exit_code == 1 and "999999" in unknown.output
    duration = run(url, "alerts", "silence", "--matcher", "model=iris", "--for", "soon")
    assert duration.exit_code == 2 and "not a duration" in duration.output


def test_marking_alerts_needs_the_api_token(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from controller.app.api import create_app

    c = make_controller(tmp_path / "c", api_token="admin-1", read_token="read-1",
                        dashboard_public=False)
    try:
        with TestClient(create_app(c)) as client:
            for method, path, body in (
                    ("POST", "/api/v1/alerts/events/1/ack", {}),
                    ("POST", "/api/v1/alerts/silences", {"matchers": ["model=iris"]}),
                    ("DELETE", "/api/v1/alerts/silences/1", None)):
                for headers in ({}, {"Authorization": "Bearer read-1"}):
                    answer = client.request(method, path, json=body, headers=headers)
                    assert answer.status_code in (401, 403), (method, path, headers)
            admin = {"Authorization": "Bearer admin-1"}
            made = client.post("/api/v1/alerts/silences", headers=admin,
                               json={"matchers": ["model=~iris|wine"], "duration_s": 60})
            assert made.status_code == 200, made.text
            both = client.post("/api/v1/alerts/silences", headers=admin,
                               json={"matchers": ["model=iris"], "event_id": 1})
            assert both.status_code == 422 and "not both" in both.text
            bad = client.post("/api/v1/alerts/silences", headers=admin,
                              json={"matchers": ["model=~("]})
            assert bad.status_code == 422 and "bad regular expression" in bad.text
            assert client.get("/api/v1/alerts/silences").status_code == 401
            listed = client.get("/api/v1/alerts/silences", headers={"Authorization": "Bearer read-1"})
            assert [s["text"] for s in listed.json()] == ["model=~iris|wine"]
    finally:
        c.db.dispose()
