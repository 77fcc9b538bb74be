"""A rollout as text: the status block with one bar per wave and the gates of the current wave,
and the closing lines of a rollout that ended. Pure formatting of the rollout view
(``GET /rollouts/{id}``)."""

from __future__ import annotations

from typing import Any

_BAR = 30
_SHOWN = 10


def _bar(done: int, total: int) -> str:
    filled = int(_BAR * done / total) if total else 0
    return "[" + "#" * filled + "." * (_BAR - filled) + "]"


def _gate_value(gate: dict[str, Any], value: float | None) -> str:
    if value is None:
        return "-"
    name = gate["name"]
    if name == "reporting":
        return f"{value:.0%}"
    if name == "failed_activations":
        return f"{value:.0%}" if 0 < gate["threshold"] < 1 and value != int(value) \
            else f"{value:g}"
    if name == "p95_latency_ms":
        return f"{value:.2f}ms" if value < 10 else f"{value:.1f}ms"
    return f"{value:.3f}"


def _gate_text(gate: dict[str, Any]) -> str:
    op = ">=" if gate["name"] == "reporting" else "<="
    mark = "ok" if gate["passed"] else ("..." if gate["pending"] else "FAILED")
    return (f"{gate['name']} {_gate_value(gate, gate['value'])} {op} "
            f"{_gate_value(gate, gate['threshold'])} {mark}")


def target_text(view: dict[str, Any]) -> str:
    """``iris:2``, or ``agent 2.0.0`` for an agent rollout."""
    if view.get("kind") == "agent":
        return f"agent {view['agent_version']}"
    return f"{view['model']}:{view['version']}"


def render_rollout(view: dict[str, Any]) -> list[str]:
    """The status block: header, one bar per wave, gates of the current wave, the state."""
    spec = view["spec"]
    soak = spec["soak_seconds"]
    soak_text = ",".join(f"{s:g}s" for s in soak) if isinstance(soak, list) else f"{soak:g}s"
    selector = spec["selector"] or "all devices"
    ident = f"#{view['id']} " if view.get("id") else ""
    lines = [f"rollout {ident}{view['name']}: {target_text(view)} to "
             f"{view['targets']} devices ({selector}); waves {spec['waves']}, soak {soak_text}, "
             f"on gate failure: {spec['on_gate_failure']}"
             + (f", probation {spec['probation']['duration_s']:g}s" if spec.get("probation")
                else "")]
    count = view["wave_count"]
    for w in view["waves"]:
        counts = f"{w['active']}/{w['devices']} active"
        failed = f", {w['failed']} failed" if w["failed"] else ""
        lines.append(f"  wave {w['wave']}/{count} {w['size']:>6} {_bar(w['active'], w['devices'])} "
                     f"{counts:>14}{failed}  {w['phase']}")
    lines += skipped_lines(view)
    if view["gates"] and view["status"] in ("running", "soaking", "paused"):
        lines.append(f"  gates of wave {view['wave']}: "
                     + " | ".join(_gate_text(g) for g in view["gates"]))
    last = view["reasons"][-1] if view["reasons"] else ""
    message = last if view["finished"] or view["status"] == "paused" else \
        view.get("message") or last
    lines.append(f"  {view['status']}: {message}")
    return lines


def skipped_lines(view: dict[str, Any]) -> list[str]:
    """The devices a class-specific version leaves out, a few by name (all with --json)."""
    skipped = view.get("skipped") or []
    if not skipped:
        return []
    shown = ", ".join(f"{s['device_id']} ({s['device_class']})" for s in skipped[:_SHOWN])
    more = len(skipped) - _SHOWN
    return [f"  skipped {len(skipped)} devices of another class (other_class: the version is "
            f"for {view.get('device_class')!r}): {shown}"
            + (f" and {more} more" if more > 0 else "")]


def change_signature(view: dict[str, Any]) -> Any:
    """What must change for a non-terminal (log) output to print the block again."""
    return (view["status"], view["wave"],
            tuple((w["sent"], w["active"], w["failed"]) for w in view["waves"]),
            tuple((g["name"], g["passed"], g["pending"]) for g in view["gates"]))


def outcome_lines(view: dict[str, Any]) -> list[str]:
    status, ref = view["status"], view["id"]
    if status == "completed":
        skipped = len(view.get("skipped") or [])
        return [f"completed: {view['active']} of {view['targets']} devices run "
                f"{target_text(view)}"
                + (f"; {skipped} devices of another class skipped" if skipped else "")]
    if status in ("aborted", "failed", "aborting"):
        reverted = view.get("reverted") or {}
        why = next((r for r in reversed(view["reasons"]) if r.startswith("abort (")), "")
        lines = [f"{status}: {why or (view['reasons'][-1] if view['reasons'] else '')}",
                 f"devices sent back to their previous version: {len(reverted)}"]
        lines += [f"  {d} -> {v or 'no model'}" for d, v in list(reverted.items())[:20]]
        if len(reverted) > 20:
            lines.append(f"  ... and {len(reverted) - 20} more (`edgewise rollout status {ref} --json`)")
        if view.get("unconfirmed"):
            lines.append(f"not confirmed: {', '.join(view['unconfirmed'][:20])}")
        return lines
    if status == "paused":
        return [f"paused: {view['reasons'][-1] if view['reasons'] else ''}",
                f"next: fix the cause, then `edgewise rollout resume {ref}`, or "
                f"`edgewise rollout abort {ref}` to send the devices back"]
    return [f"{status}: {view.get('message', '')}"]

