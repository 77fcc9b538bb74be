"""The Prometheus rules and the Grafana dashboard shipped under deploy/, checked with the tools
that judge them and against a live scrape of a real controller: `promtool check rules` on the
rules, `promtool check metrics` on the scrape (names, units, `_total` counters), every series a
rule or a dashboard query names is one the controller exports (or a recording rule of the
shipped file), and no exported series carries a per-device label."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from controller.monitoring import AlertRules
from tests.harness.api_server import serving
from tests.harness.prometheus_tools import require_tool
from tests.harness.web_fleet import make_controller, populate, populate_health

DEPLOY = Path(__file__).resolve().parents[4] / "deploy"
RULES = DEPLOY / "prometheus" / "edgewise-rules.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "edgewise.json"
# series Prometheus itself makes (not the controller's)
PROMETHEUS_OWN = {"up"}
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    c = make_controller(tmp_path_factory.mktemp("scrape"),
                        alertmanager_url="http://127.0.0.1:9")  # notifier metrics appear
    now = time.time()
    populate(c, now)
    populate_health(c, now)
    c.alerts.evaluate(now, AlertRules(silent_after_s=60))
    with serving(c) as url:
        text = httpx.get(f"{url}/metrics", timeout=30).text
    c.db.dispose()
    yield text


def exported(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "counter" and not name.endswith("_total"):
                names.add(name + "_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def series_names(expr: str) -> set[str]:
    """The metric (and recording rule) names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)            # strings
    text = re.sub(r"\{[^}]*\}", "", text)                       # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)                       # ranges
    text = re.sub(r"\$\w+", "", text)                            # Grafana variables
    names = set()
    for m in _NAME.finditer(text):
        rest = text[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or aggregation
        if m.group() in {"and", "or", "unless", "bool", "offset"}:
            continue
        if re.fullmatch(r"\d.*", m.group()):
            continue
        names.add(m.group())
    return names


def rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    for var in doc["templating"]["list"]:
        exprs.append(re.sub(r"^label_values\((\w+),.*\)$", r"\1", var["query"]["query"]))
    return exprs


def test_promtool_accepts_the_rules() -> None:
    promtool = require_tool("promtool", "prometheus")
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_accepts_a_live_scrape(scrape: str) -> None:
    promtool = require_tool("promtool", "prometheus")
    done = subprocess.run([promtool, "check", "metrics"], input=scrape, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), \
        done.stdout + done.stderr


def test_no_series_is_per_device(scrape: str) -> None:
    labels = set(re.findall(r"[{,](\w+)=", scrape))
    assert labels and not labels & {"device", "device_id", "instance_id"}, labels


def test_rules_and_dashboard_read_only_what_the_controller_exports(scrape: str) -> None:
    names = exported(scrape)
    recorded = {str(r["record"]) for r in rules() if "record" in r}
    assert all(":" in r for r in recorded)  # the level:metric:operations naming
    for rule in rules():
        used = series_names(str(rule["expr"]))
        assert used, rule
        unknown = used - names - recorded - PROMETHEUS_OWN
        assert not unknown, f"rule {rule.get('record') or rule.get('alert')} reads {unknown}"
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    covered = set()
    for expr in exprs:
        used = series_names(expr)
        assert used, expr
        unknown = used - names - recorded
        assert not unknown, f"dashboard query {expr!r} reads {unknown}, which the controller " \
                            "does not export"
        covered |= used
    # the dashboard shows fleet, quality, drift, rollouts and device health
    for needed in ("edgewise_devices", "edgewise_accuracy", "edgewise_drift_psi",
                   "edgewise_devices_running", "edgewise_health_rss_bytes",
                   "edgewise_latency_p95_seconds"):
        assert needed in covered, needed


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (Grafana's variables replaced by a match-all) as a rule."""
    promtool = require_tool("promtool", "prometheus")
    exprs = [e.replace("$group", ".*").replace("$model", ".*") for e in dashboard_exprs()]
    doc = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}:check", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(doc))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_overlay_wires_prometheus_and_grafana_to_the_controller() -> None:
    compose = DEPLOY / "compose"
    spec = yaml.safe_load((compose / "compose.monitoring.yaml").read_text())
    assert set(spec["services"]) == {"prometheus", "grafana"}
    for name, service in spec["services"].items():
        assert service["restart"] == "unless-stopped"
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (compose / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in spec["volumes"]
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = prometheus["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["controller:8700"]
    assert prometheus["rule_files"] == ["/etc/prometheus/edgewise-rules.yml"]
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "edgewise.yaml").read_text())
    uid = datasource["datasources"][0]["uid"]
    doc = json.loads(DASHBOARD.read_text())
    assert {p["datasource"]["uid"] for p in doc["panels"] if "datasource" in p} == {uid}
