"""`edgewise drift` as text: a table per feature with a sparkline of its PSI over time, or per
device or label group, then the markers of the range. Everything comes from one drift view
(``GET /api/v1/drift/{model}``); ``now`` is an argument so tests pin the "ago" column."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controller.cli.common import format_table
from controller.cli.render import ago, paint, span

SPARKS = "▁▂▃▄▅▆▇█"
NO_FIGURE = "·"
MARKER_WORDS = {"version_started": "version started", "version_stopped": "version stopped",
                "rollout_started": "rollout started", "rollout_ended": "rollout ended",
                "deployment": "deployment", "alert_fired": "alert fired",
                "alert_cleared": "alert cleared"}


def sparkline(values: Sequence[float | None], top: float) -> str:
    """One character per value, ▁ (0) to █ (``top`` or more); ``·`` where there is no figure.
    A shared ``top`` keeps the lines of several features comparable."""
    out = []
    for v in values:
        if v is None:
            out.append(NO_FIGURE)
        else:
            level = 0 if top <= 0 else round(min(max(v, 0.0), top) / top * (len(SPARKS) - 1))
            out.append(SPARKS[level])
    return "".join(out)


def _psi(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _verdict(drifted: bool | None) -> str:
    return "-" if drifted is None else "yes" if drifted else "no"


def header(view: Mapping[str, Any]) -> str:
    scope = (f"last {span(view['window_s'])} in {len(view['buckets'])} buckets of "
             f"{span(view['bucket_s'])}" if view["by"] == "feature"
             else f"last {span(view['window_s'])}, by {view['group_by'] or view['by']}")
    line = (f"{view['model']}:{view['version']} · {scope} · {view['devices']} device"
            f"{'s' if view['devices'] != 1 else ''}, {view['windows']:,} windows")
    skipped = sum(view["skipped"].values())
    if skipped:
        reasons = ", ".join(f"{n} {why}" for why, n in view["skipped"].items())
        line += f" ({skipped} skipped: {reasons})"
    return line


def feature_table(view: Mapping[str, Any], colour: bool = False) -> str:
    features = view["features"]
    values = [p["psi"] for f in features for p in f["points"] if p["psi"] is not None]
    thresholds = [p["threshold"] for f in features for p in f["points"]
                  if p["threshold"] is not None]
    top = max([*values, *thresholds, 0.0])
    rows = []
    for f in features:
        latest, peak, overall = f["latest"] or {}, f["peak"] or {}, f["overall"]
        rows.append([f["name"], _psi(latest.get("psi")), _psi(peak.get("psi")),
                     _psi(latest.get("threshold")), _verdict(latest.get("drifted")),
                     f"{overall['n']:,}", sparkline([p["psi"] for p in f["points"]], top)])

    def paint_cell(column: int, cell: str) -> str:
        return paint(cell, colour, fg="red") if column == 4 and cell.strip() == "yes" else cell

    table = format_table(["FEATURE", "LATEST PSI", "MAX PSI", "THRESHOLD", "DRIFTED", "ROWS",
                          f"PSI PER {span(view['bucket_s'])}, OLDEST FIRST"], rows,
                         paint_cell if colour else None)
    shown = len(features)
    if shown < view["features_total"]:
        table += f"\n({view['features_total'] - shown} more features not shown)"
    return table


def row_table(view: Mapping[str, Any], colour: bool = False) -> str:
    key = "DEVICE" if view["by"] == "device" else (view["group_by"] or "GROUP").upper()
    rows = []
    for r in view["rows"]:
        worst = r["worst"] or {}
        rows.append([r["key"] or "(none)", r["devices"], r["windows"], f"{r['rows']:,}",
                     worst.get("name", "-"), _psi(worst.get("psi")),
                     _psi(worst.get("threshold")), ",".join(r["drifted"]) or "-"])

    def paint_cell(column: int, cell: str) -> str:
        return paint(cell, colour, fg="red") if column == 7 and cell.strip() != "-" else cell

    table = format_table([key, "DEVICES", "WINDOWS", "ROWS", "WORST FEATURE", "PSI",
                          "THRESHOLD", "DRIFTED"], rows, paint_cell if colour else None)
    if len(view["rows"]) < view["rows_total"]:
        table += f"\n({view['rows_total'] - len(view['rows'])} more not shown)"
    return table


def markers_table(markers: Sequence[Mapping[str, Any]], now: float) -> str:
    return format_table(["WHEN", "MARKER", "WHAT"],
                        [[ago(m["ts"], now), MARKER_WORDS.get(m["kind"], m["kind"]), m["text"]]
                         for m in markers])


def render(view: Mapping[str, Any], now: float, colour: bool = False) -> str:
    parts = [header(view)]
    if view["reason"]:
        parts.append(f"note: {view['reason']}")
    if view["status"] == "ok":
        parts.append(feature_table(view, colour) if view["by"] == "feature"
                     else row_table(view, colour))
    if view["markers"]:
        parts.append("")
        parts.append(markers_table(view["markers"], now))
    return "\n".join(parts)
