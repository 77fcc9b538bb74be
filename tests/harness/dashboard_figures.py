"""The figures the dashboard's fleet overview shows, read from the page, and the rules that keep
them consistent: the drift tile says whether drift alerts fire, and agrees with the alerts shown.

The browser test (tests/e2e/web/test_dashboard_browser.py) checks them live and, with
``EDGEWISE_UPDATE_DOCS=1``, writes them beside the README's screenshot (docs/dashboard.json, with
the screenshot's sha256); tests/unit/test_docs_figures.py checks the committed pair.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from tests.harness.paths import REPO_ROOT

SCREENSHOT = REPO_ROOT / "docs" / "dashboard.png"
SIDECAR = REPO_ROOT / "docs" / "dashboard.json"


def read_overview(page: Any) -> dict[str, Any]:
    """The drift and alerts tiles and the kinds of the firing alerts listed, as shown."""
    def tile(testid: str) -> dict[str, str]:
        return {"value": page.inner_text(f"[data-testid={testid}] .kpi-value"),
                "note": page.inner_text(f"[data-testid={testid}] .kpi-note")}

    more = page.locator("[data-testid=alerts] p.muted")
    more_text = more.inner_text() if more.count() else ""
    match = re.search(r"and (\d+) more", more_text)
    return {"tiles": {"drift": tile("kpi-drift"), "alerts": tile("kpi-alerts")},
            "alerts_listed": page.locator("[data-testid=alerts] li .pill").all_inner_texts(),
            "alerts_more": int(match.group(1)) if match else 0}


def alert_kinds(note: str) -> dict[str, int]:
    """The alerts tile's note, "12 accuracy · 5 drift", as counts by kind."""
    if note == "none firing":
        return {}
    return {kind: int(n.replace(",", "")) for n, kind in
            (part.split(" ", 1) for part in note.split(" · "))}


def problems(figures: dict[str, Any]) -> list[str]:
    """Why the figures contradict each other (empty when they agree)."""
    out = []
    drift, alerts = figures["tiles"]["drift"], figures["tiles"]["alerts"]
    listed = figures["alerts_listed"]
    if alerts["value"] == "–":
        return out  # alerts not available: nothing to compare
    count = int(alerts["value"].replace(",", ""))
    kinds = alert_kinds(alerts["note"])
    if count != len(listed) + figures["alerts_more"] or count != sum(kinds.values()):
        out.append(f"the alerts tile says {count} ({alerts['note']}), the list shows "
                   f"{len(listed)} + {figures['alerts_more']} more")
    if not figures["alerts_more"]:
        shown = {kind: listed.count(kind) for kind in set(listed)}
        if shown != kinds:
            out.append(f"the alerts tile counts {kinds}, the list shows {shown}")
    if drift["value"] == "–":
        if drift["note"] != "no metrics windows yet":
            out.append(f"no drift figure, yet the note says {drift['note']!r}")
        return out
    firing = kinds.get("drift", 0)
    if firing == 0 and "not alerting" not in drift["note"]:
        out.append(f"PSI {drift['value']} with no drift alert firing, yet the drift tile says "
                   f"{drift['note']!r} (it must say 'not alerting')")
    if firing and f"{firing} drift alert" not in drift["note"]:
        out.append(f"{firing} drift alerts firing, yet the drift tile says {drift['note']!r}")
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_sidecar(figures: dict[str, Any], screenshot: Path = SCREENSHOT,
                  sidecar: Path = SIDECAR) -> None:
    sidecar.write_text(json.dumps({"screenshot": screenshot.name, "sha256": sha256(screenshot),
                                   **figures}, indent=2, ensure_ascii=False) + "\n")
