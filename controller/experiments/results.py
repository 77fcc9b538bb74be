"""The devices' experiment windows added up per arm, judged, and laid out over time.

Input: the ``experiment`` telemetry records of one experiment (``edgewise_wire.experiments``),
each with the device that sent it. Output (:func:`summarise`): per arm the rows, labelled rows,
accuracy with its always-valid interval, latency mean and p95, memory, errors; the comparison
of :mod:`edgewise_monitoring.experiment_test` (paired in shadow mode, unpaired for A/B) and the
latency comparison; in shadow mode the agreement and the largest confusion cells; the devices
that refused, with their reasons; and a series over time (the cumulative figures after each
time bucket) for the dashboard's charts. Everything is recomputed from the windows, so a
restarted controller shows exactly what it showed before.

Pure: no database, no clock.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edgewise_monitoring.experiment_test import ArmTally, Design, PairedTally, judge, judge_latency
from edgewise_monitoring.latency import LatencyHistogram
from edgewise_wire.experiments import ARMS

TOP_CONFUSION = 10


@dataclass
class _Totals:
    arms: dict[str, ArmTally]
    errors: dict[str, int]
    latency: dict[str, LatencyHistogram]
    memory: dict[str, dict[str, int]]  # arm -> device -> last measured session bytes
    devices: dict[str, set[str]]
    paired: PairedTally
    compared: int = 0
    agreed: int = 0
    skipped: int = 0
    failed: int = 0
    slow: int = 0

    @classmethod
    def empty(cls) -> _Totals:
        return cls({a: ArmTally() for a in ARMS}, dict.fromkeys(ARMS, 0),
                   {a: LatencyHistogram() for a in ARMS}, {a: {} for a in ARMS},
                   {a: set() for a in ARMS}, PairedTally())


def _add(totals: _Totals, device: str, record: Mapping[str, Any],
         confusion: Counter[tuple[str, str]]) -> None:
    for arm in ARMS:
        a = record["arms"][arm]
        totals.arms[arm].add(ArmTally(int(a["labelled"]), int(a["correct"]), int(a["rows"]),
                                      float(a["latency_sum"]), float(a["latency_sumsq"])))
        totals.errors[arm] += int(a["errors"])
        if isinstance(a.get("latency"), dict) and a["latency"].get("count"):
            # a histogram of another bucket scheme is left out: the mean still counts
            with contextlib.suppress(ValueError, KeyError, TypeError):
                totals.latency[arm].merge(LatencyHistogram.from_dict(a["latency"]))
        if a.get("memory_bytes") is not None:
            totals.memory[arm][device] = int(a["memory_bytes"])
        if a["rows"] or a["labelled"]:
            totals.devices[arm].add(device)
    shadow = record.get("shadow")
    if shadow is not None:
        totals.paired.add(PairedTally.from_dict(shadow["paired"]))
        totals.compared += int(shadow["compared"])
        totals.agreed += int(shadow["agreed"])
        totals.skipped += int(shadow["skipped"])
        totals.failed += int(shadow["failed"])
        totals.slow += int(shadow["slow"])
        for control, candidate, count in shadow["confusion"]:
            confusion[(str(control), str(candidate))] += int(count)


def _arm_view(totals: _Totals, arm: str, design: Design) -> dict[str, Any]:
    tally = totals.arms[arm]
    interval = tally.accuracy_interval(design.alpha, design.tau2)
    memory = totals.memory[arm]
    hist = totals.latency[arm]
    return {"devices": len(totals.devices[arm]), "rows": tally.calls, "labelled": tally.n,
            "accuracy": tally.accuracy,
            "accuracy_low": interval[0] if interval else None,
            "accuracy_high": interval[1] if interval else None,
            "latency_mean_ms": tally.latency_mean,
            "latency_p95_ms": hist.quantile(0.95) if hist.count else None,
            "memory_bytes": max(memory.values()) if memory else None,
            "errors": totals.errors[arm]}


def summarise(mode: str, design: Design, windows: Iterable[tuple[str, Mapping[str, Any]]],
              *, bucket_s: float = 60.0) -> dict[str, Any]:
    """``windows``: (device id, experiment record) pairs, in any order."""
    ordered = sorted(windows, key=lambda w: float(w[1]["ts"]))
    totals = _Totals.empty()
    confusion: Counter[tuple[str, str]] = Counter()
    refused: dict[str, str] = {}
    series: list[dict[str, Any]] = []
    bucket_end: float | None = None
    paired = mode == "shadow"

    def point(t: float) -> dict[str, Any]:
        c = judge(design, totals.arms["control"], totals.arms["candidate"],
                  totals.paired if paired else None)
        return {"t": t, "control_accuracy": totals.arms["control"].accuracy,
                "candidate_accuracy": totals.arms["candidate"].accuracy,
                "effect": c.effect, "low": c.low, "high": c.high, "verdict": c.verdict,
                "agreement": totals.agreed / totals.compared if totals.compared else None,
                "control_p95_ms": totals.latency["control"].quantile(0.95)
                if totals.latency["control"].count else None,
                "candidate_p95_ms": totals.latency["candidate"].quantile(0.95)
                if totals.latency["candidate"].count else None}

    for device, record in ordered:
        ts = float(record["ts"])
        if record.get("refused") is not None:
            refused[device] = str(record["refused"])
            continue
        refused.pop(device, None)  # it runs now (a later order, a freed budget)
        if bucket_end is not None and ts > bucket_end:
            series.append(point(bucket_end))
        bucket_end = (ts // bucket_s + 1) * bucket_s
        _add(totals, device, record, confusion)
    if bucket_end is not None:
        series.append(point(bucket_end))
    comparison = judge(design, totals.arms["control"], totals.arms["candidate"],
                       totals.paired if paired else None)
    out: dict[str, Any] = {
        "arms": {arm: _arm_view(totals, arm, design) for arm in ARMS},
        "comparison": comparison.to_dict(),
        "latency": judge_latency(design, totals.arms["control"],
                                 totals.arms["candidate"]).to_dict(),
        "refused": refused, "series": series, "shadow": None}
    if paired:
        out["shadow"] = {
            "compared": totals.compared, "agreed": totals.agreed,
            "agreement": totals.agreed / totals.compared if totals.compared else None,
            "skipped": totals.skipped, "failed": totals.failed, "slow": totals.slow,
            "disagreements": [[a, b, n] for (a, b), n in confusion.most_common()
                              if a != b][:TOP_CONFUSION]}
    return out
