"""What a scenario run produced: the timeline as it happened, what the controller saw, and the
telemetry accounting per device. Pure data and text; ``simulator.scenario_run`` fills it in."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class DeviceAccount:
    """One device's telemetry: the outbox's own counters against the controller's rows.

    The outbox numbers every record it stores (``seq``, never reused); a record leaves it only
    when the controller acknowledged storing it. So after the run every seq it assigned is
    either stored at the controller, still pending on the device, or lost.
    """

    device_id: str
    assigned: int  # seqs the outbox assigned (its last seq)
    stored: int  # records the controller holds for the device
    pending: int  # records still in the outbox (a device left dead keeps them)
    dropped_counted: int  # records refused or dropped by the outbox and counted (e.g. disk full)
    unflushed_at_kill: int  # records in memory when the agent was killed: never got a seq

    @property
    def lost(self) -> int:
        return max(0, self.assigned - self.stored - self.pending)

    @property
    def extra(self) -> int:
        """Records the controller holds beyond the outbox's seqs (should be 0)."""
        return max(0, self.stored - (self.assigned - self.pending))


@dataclass
class ScenarioReport:
    name: str
    description: str
    source: str
    devices: int
    groups: list[dict[str, Any]]
    broker: str = ""
    controller: str = ""
    timeline: list[tuple[float, str]] = field(default_factory=list)
    setup_notes: list[str] = field(default_factory=list)
    workload: dict[str, int] = field(default_factory=dict)
    end_state: dict[str, Any] = field(default_factory=dict)
    controller_view: dict[str, Any] = field(default_factory=dict)
    accounts: list[DeviceAccount] = field(default_factory=list)
    agent_warnings: Counter[str] = field(default_factory=Counter)
    agent_counters: dict[str, int] = field(default_factory=dict)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)  # (what, ok, detail)
    resources: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    def note(self, t: float, text: str) -> None:
        self.timeline.append((round(t, 2), text))

    @property
    def lost(self) -> int:
        return sum(a.lost for a in self.accounts)

    @property
    def passed(self) -> bool:
        return all(ok for _, ok, _ in self.checks)

    def totals(self) -> dict[str, int]:
        return {
            "assigned": sum(a.assigned for a in self.accounts),
            "stored": sum(a.stored for a in self.accounts),
            "pending": sum(a.pending for a in self.accounts),
            "dropped_counted": sum(a.dropped_counted for a in self.accounts),
            "unflushed_at_kill": sum(a.unflushed_at_kill for a in self.accounts),
            "lost": self.lost,
            "extra": sum(a.extra for a in self.accounts),
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["accounts"] = [{**asdict(a), "lost": a.lost} for a in self.accounts]
        d["agent_warnings"] = dict(self.agent_warnings)
        d["totals"] = self.totals()
        d["passed"] = self.passed
        return d


def render(report: ScenarioReport) -> str:
    lines = [f"Scenario {report.name!r} ({report.source})"]
    if report.description:
        lines.append(f"  {report.description}")
    groups = ", ".join(f"{g['name']} x{g['count']}"
                       + (f" [{', '.join(f'{k}={v}' for k, v in g['labels'].items())}]"
                          if g["labels"] else "") for g in report.groups)
    lines.append(f"  {report.devices} devices: {groups}")
    lines.append(f"  broker {report.broker}; controller {report.controller}")
    for n in report.setup_notes:
        lines.append(f"  {n}")
    lines.append("")
    lines.append("What happened")
    for at, text in report.timeline:
        lines.append(f"  t={at:7.2f}s  {text}")
    if report.workload:
        w = report.workload
        lines.append(f"  workload: {w.get('predictions', 0)} predictions, "
                     f"{w.get('feedback', 0)} labels fed back, "
                     f"{w.get('refused_no_model', 0)} refused (no model yet)"
                     + (f", {w['shifted_rows']} rows shifted" if w.get("shifted_rows") else "")
                     + (f", {w['disagreeing_labels']} labels changed (concept)"
                        if w.get("disagreeing_labels") else ""))
    lines.append("")
    lines.append("Devices at the end")
    es = report.end_state
    if es:
        lines.append(f"  live {es.get('live')}, left killed {es.get('killed')}, connected "
                     f"{es.get('connected')}, failed updates {es.get('failed')}")
        for version, count in sorted(es.get("versions", {}).items()):
            lines.append(f"  running {version}: {count}")
    if report.agent_counters:
        lines.append("  agents: " + ", ".join(f"{k} {v}" for k, v in
                                               sorted(report.agent_counters.items())))
    if report.agent_warnings:
        lines.append("  agent warnings and errors (logged):")
        for message, times in report.agent_warnings.most_common(8):
            lines.append(f"    {times:6d} x {message}")
    lines.append("")
    lines.append("What the controller saw")
    cv = report.controller_view
    for key in ("devices", "online", "offline", "versions", "states"):
        if key in cv:
            lines.append(f"  {key}: {cv[key]}")
    if "alerts" in cv:
        first = cv.get("alerts_first_fired_at_s") or {}
        lines.append(f"  alerts fired: {cv['alerts'] or 'none'}" + (
            " (first at " + ", ".join(f"{k} t={v:g}s" for k, v in first.items()) + ")"
            if first else ""))
    if "bridge" in cv:
        lines.append(f"  bridge: {cv['bridge']}")
    if "chunks" in cv:
        lines.append(f"  chunk server: {cv['chunks']}")
    lines.append("")
    t = report.totals()
    lines.append("Telemetry accounting (every device's outbox seqs vs the controller's rows)")
    lines.append(f"  numbered by the outboxes {t['assigned']}, stored by the controller "
                 f"{t['stored']}, still on devices {t['pending']}")
    if t["dropped_counted"]:
        lines.append(f"  refused by a full outbox and counted (never numbered): "
                     f"{t['dropped_counted']}")
    if t["unflushed_at_kill"]:
        lines.append(f"  in memory when an agent was killed (never numbered; a crash loses at "
                     f"most one flush interval): {t['unflushed_at_kill']}")
    lost_devices = [a for a in report.accounts if a.lost]
    lines.append(f"  LOST: {t['lost']}" + (
        "  (" + ", ".join(f"{a.device_id}: {a.lost}" for a in lost_devices[:5]) + ")"
        if lost_devices else ""))
    if t["extra"]:
        lines.append(f"  controller holds {t['extra']} records beyond the outboxes' seqs")
    if report.resources:
        r = report.resources
        lines.append("")
        lines.append(f"Simulator: {r.get('rss_mib')} MiB resident, {r.get('cpu_s')} s CPU "
                     f"over {report.duration_s:.0f} s")
    lines.append("")
    lines.append("Checks")
    for check, ok, detail in report.checks:
        lines.append(f"  [{'ok' if ok else 'FAIL'}] {check}" + (f": {detail}" if detail else ""))
    lines.append(f"Result: {'PASS' if report.passed else 'FAIL'}")
    return "\n".join(lines)
