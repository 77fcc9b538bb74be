"""`edgewise rollout`, `edgewise devices` and `edgewise audit`: staged rollouts from the CLI.

Each command is one REST call (``controller/api_rollouts.py``) plus rendering; the root group
in ``controller/cli.py`` turns client errors into one line and exit code 1.
"""

from __future__ import annotations

import getpass
import json
import re
import socket
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from controller.client import ControllerClient, ControllerClientError

# exit codes of `rollout start|status|abort --wait`
EXIT_COMPLETED, EXIT_ERROR, EXIT_ABORTED, EXIT_TIMEOUT, EXIT_PAUSED, EXIT_FAILED = 0, 1, 2, 3, 4, 5
EXIT_CODES_HELP = """\b
Exit codes with --wait:
  0  completed: every wave reported the version and passed its gates
  1  error: the spec was refused, the controller is unreachable, ...
  2  aborted: a gate failed (or an operator aborted); the moved devices
     were sent back to what they ran before
  3  --timeout passed; the rollout goes on (`edgewise rollout status ID --wait`)
  4  paused: a gate failed with --on-gate-failure pause, or an operator paused it
  5  failed: aborted, but some devices never confirmed their revert"""

_FINAL = {"completed": EXIT_COMPLETED, "aborted": EXIT_ABORTED, "failed": EXIT_FAILED,
          "paused": EXIT_PAUSED}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class RolloutClient(ControllerClient):
    """The REST calls of these commands; every call names its actor for the audit log."""

    def __init__(self, base_url: str, token: str | None = None, **kwargs: Any) -> None:
        super().__init__(base_url, token, **kwargs)
        self._http.headers["X-Edgewise-Actor"] = _actor()

    def create_rollout(self, spec: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        return self._call("POST", "/rollouts", json=spec,
                          params={"dry_run": "true"} if dry_run else {})

    def rollouts(self, include_finished: bool = True, limit: int = 20) -> list[dict[str, Any]]:
        return self._call("GET", "/rollouts", params={"all": str(include_finished).lower(),
                                                      "limit": limit})

    def rollout(self, ref: str) -> dict[str, Any]:
        return self._call("GET", f"/rollouts/{ref}")

    def rollout_action(self, ref: str, action: str, reason: str = "") -> dict[str, Any]:
        return self._call("POST", f"/rollouts/{ref}/{action}", json={"reason": reason})

    def latest_version(self, model: str) -> int:
        versions = self._call("GET", f"/models/{model}")["versions"]
        return max(int(v["version"]) for v in versions)

    def devices(self, selector: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/devices", params={"selector": selector} if selector else {})

    def device(self, device_id: str) -> dict[str, Any]:
        return self._call("GET", f"/devices/{device_id}")

    def set_labels(self, device_id: str, set_: dict[str, str],
                   remove: list[str]) -> dict[str, Any]:
        return self._call("PATCH", f"/devices/{device_id}/labels",
                          json={"set": set_, "remove": remove})

    def register(self, device_id: str, labels: dict[str, str], note: str) -> dict[str, Any]:
        return self._call("POST", "/devices", json={"device_id": device_id, "labels": labels,
                                                    "note": note})

    def audit(self, **params: Any) -> dict[str, Any]:
        return self._call("GET", "/audit",
                          params={k: v for k, v in params.items() if v is not None})


def _actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _client(ctx: click.Context) -> RolloutClient:
    from controller.cli_security import resolve_credentials

    obj = ctx.find_root().obj
    # --token / EDGEWISE_API_TOKEN, else what `edgewise login` saved (as controller/cli.py)
    token, ca_cert = resolve_credentials(obj["url"], obj["token"])
    return RolloutClient(obj["url"], token, ca_cert=ca_cert)


def _fail(message: str) -> None:
    click.echo(click.style("error: ", fg="red", bold=True) + message, err=True)
    sys.exit(EXIT_ERROR)


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``1.5m``, ``2h``, ``500ms`` -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration; write e.g. 30s, 10m or 1h")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _durations(text: str) -> float | list[float]:
    parts = [parse_duration(p) for p in text.split(",")]
    return parts[0] if len(parts) == 1 else parts


def _share(text: str) -> float:
    """``0.9`` or ``90%``."""
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: write a share like 0.9 or 90%") from None


def _budget(text: str) -> int | float | str:
    """``2`` (devices), ``0.05`` (a share of the wave) or ``5%``."""
    text = text.strip()
    if text.endswith("%"):
        return text
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise click.BadParameter(f"{text!r}: write a device count (2), a share (0.05) "
                                     "or a percentage (5%)") from None


def load_spec_file(path: Path) -> dict[str, Any]:
    """A rollout spec from TOML (``.toml``) or JSON (anything else)."""
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise click.BadParameter(f"{path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: "
                                 f"{exc}") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: expected a table of rollout settings")
    return data


# -- rendering ---------------------------------------------------------------------------------

_BAR = 30


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


def render_rollout(view: dict[str, Any]) -> list[str]:
    """The status block: header, one bar per wave, gates of the current wave, the state."""
    spec = view["spec"]
    soak = spec["soak_seconds"]
    soak_text = ",".join(f"{s:g}s" for s in soak) if isinstance(soak, list) else f"{soak:g}s"
    selector = spec["selector"] or "all devices"
    ident = f"#{view['id']} " if view.get("id") else ""
    lines = [f"rollout {ident}{view['name']}: {view['model']}:{view['version']} to "
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
    if view["gates"] and view["status"] in ("running", "soaking", "paused"):
        lines.append(f"  gates of wave {view['wave']}: "
                     + " | ".join(_gate_text(g) for g in view["gates"]))
    last = view["reasons"][-1] if view["reasons"] else ""
    message = last if view["finished"] or view["status"] == "paused" else \
        view.get("message") or last
    lines.append(f"  {view['status']}: {message}")
    return lines


def _signature(view: dict[str, Any]) -> Any:
    """What must change for a non-terminal (log) output to print the block again."""
    return (view["status"], view["wave"],
            tuple((w["sent"], w["active"], w["failed"]) for w in view["waves"]),
            tuple((g["name"], g["passed"], g["pending"]) for g in view["gates"]))


def _outcome(view: dict[str, Any]) -> list[str]:
    status, ref = view["status"], view["id"]
    if status == "completed":
        return [f"completed: {view['active']} of {view['targets']} devices run "
                f"{view['model']}:{view['version']}"]
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


def follow(client: RolloutClient, ref: str, timeout: float, as_json: bool,
           interval: float = 0.5) -> int:
    """Show live progress until the rollout completes, aborts, fails or pauses."""
    tty = sys.stdout.isatty() and not as_json
    deadline = time.monotonic() + timeout if timeout > 0 else None
    shown = 0
    last: Any = None
    while True:
        view = client.rollout(ref)
        done = view["status"] in _FINAL
        if not as_json:
            lines = render_rollout(view)
            if tty:
                if shown:
                    click.echo(f"\x1b[{shown}F\x1b[J", nl=False)
                click.echo("\n".join(lines))
                shown = len(lines)
            elif _signature(view) != last or done:
                click.echo("\n".join(lines))
                last = _signature(view)
        if done:
            if as_json:
                click.echo(json.dumps(view, indent=2))
            else:
                click.echo("\n".join(_outcome(view)))
            return _FINAL[view["status"]]
        if deadline is not None and time.monotonic() > deadline:
            if as_json:
                click.echo(json.dumps(view, indent=2))
            click.echo(f"timed out after {timeout:g}s; the rollout goes on: "
                       f"`edgewise rollout status {view['id']} --wait`", err=as_json)
            return EXIT_TIMEOUT
        time.sleep(interval)


def _table(header: list[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in cells)


def _labels_text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _emit(data: Any, as_json: bool, text: str | None = None) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text)


# -- rollout -----------------------------------------------------------------------------------

@click.group("rollout")
def rollout() -> None:
    """Roll a model version out to devices in waves, gated on health and ML metrics.

    Example: edgewise rollout start iris:2 --selector site=berlin --waves 1,10%,100% --wait
    """


@rollout.command("start", epilog=EXIT_CODES_HELP)
@click.argument("target", metavar="[NAME[:VERSION]]", required=False)
@click.option("--spec", "spec_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Rollout spec file (TOML or JSON, keys in docs/rollouts.md); flags override it.")
@click.option("--selector", help="Which devices, by label: 'site=berlin,hw in (pi4,pi5),!canary' "
              "(default: every device).")
@click.option("--waves", help="Cumulative wave sizes, counts or percentages: 1,10%,50%,100% "
              "(default without --spec: 100%, all at once).")
@click.option("--soak", help="Time each wave must stay healthy before the next: 10m, or one per "
              "wave: 30m,10m,10m (default without --spec: 0).")
@click.option("--min-reporting", type=str, help="Share of a wave that must report the version "
              "active: 0.9 or 90% (default 0.9).")
@click.option("--max-failed", type=str, help="Failed activations a wave tolerates: a count (2), "
              "a share (0.05) or 5% (default 0).")
@click.option("--max-accuracy-drop", type=float, help="Largest accuracy drop against the version "
              "each device ran before, from labelled feedback, e.g. 0.02 (default: off).")
@click.option("--min-labelled", type=int, help="Labels a wave needs before the accuracy gate can "
              "pass (default 30).")
@click.option("--max-p95-latency-ms", type=float, help="Largest p95 latency on any device of the "
              "wave, in ms (default: off).")
@click.option("--max-drift-psi", type=float, help="Largest input/prediction drift (PSI) on any "
              "device of the wave (default: off; needs agents that send metrics windows).")
@click.option("--wave-timeout", help="How long a wave may take to report, or a gate to gather "
              "evidence, before that counts as a failure: 1h (default).")
@click.option("--on-gate-failure", type=click.Choice(["pause", "abort"]),
              help="Stop and wait for a human (pause, default), or send every moved device back "
              "to its previous version (abort).")
@click.option("--priority", type=int, help="Overlapping a live rollout of lower priority takes "
              "its devices over; equal or higher refuses the start (default 0).")
@click.option("--name", help="A name for the rollout (default MODEL:VERSION).")
@click.option("--probation-s", type=click.FloatRange(0, 86400), help="How long each device serves "
              "the new version under watch (errors, latency) before it commits it, in seconds; "
              "[probation] in --spec for the thresholds (default: the agent's probation_s).")
@click.option("--dry-run", is_flag=True, help="Validate and show the wave plan; send nothing.")
@click.option("--wait/--no-wait", default=False, help="Show live progress until it ends.")
@click.option("--timeout", default="0", show_default=True,
              help="Stop waiting after this long (0: no limit); the rollout goes on.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def rollout_start(ctx: click.Context, target: str | None, spec_file: Path | None,
                  selector: str | None, waves: str | None, soak: str | None,
                  min_reporting: str | None, max_failed: str | None,
                  max_accuracy_drop: float | None, min_labelled: int | None,
                  max_p95_latency_ms: float | None, max_drift_psi: float | None,
                  wave_timeout: str | None, on_gate_failure: str | None, priority: int | None,
                  name: str | None, probation_s: float | None, dry_run: bool, wait: bool,
                  timeout: str, as_json: bool) -> None:
    """Start rolling NAME:VERSION (default: the latest version) out to the devices a selector
    picks, wave by wave; each wave must report, soak and pass its gates before the next.

    Without --spec and --waves the version goes to every selected device at once (one wave).

    Example: edgewise rollout start iris:2 --selector site=berlin --waves 5%,25%,100% --soak 10m --max-accuracy-drop 0.02 --on-gate-failure abort --wait
    """
    client = _client(ctx)
    spec: dict[str, Any] = load_spec_file(spec_file) if spec_file else {}
    if target:
        model, _, version_text = target.partition(":")
        if version_text and not version_text.isdigit():
            _fail(f"version in {target!r} must be a number, e.g. {model}:2")
        spec["model"] = model
        if version_text:
            spec["version"] = int(version_text)
        else:
            spec.pop("version", None)
    if "model" not in spec:
        _fail("name the model: `edgewise rollout start NAME[:VERSION]`, or `model` in --spec")
    if "version" not in spec:
        spec["version"] = client.latest_version(str(spec["model"]))
    if not spec_file:
        spec.setdefault("waves", "100%")
        spec.setdefault("soak_seconds", 0)
    gates = dict(spec.get("gates") or {})
    flags: dict[str, Any] = {
        "selector": selector, "waves": waves,
        "soak_seconds": _durations(soak) if soak is not None else None,
        "wave_timeout_seconds": parse_duration(wave_timeout) if wave_timeout else None,
        "on_gate_failure": on_gate_failure, "priority": priority, "name": name}
    spec.update({k: v for k, v in flags.items() if v is not None})
    gate_flags: dict[str, Any] = {
        "min_reporting_share": _share(min_reporting) if min_reporting is not None else None,
        "max_failed_activations": _budget(max_failed) if max_failed is not None else None,
        "max_accuracy_drop": max_accuracy_drop, "min_labelled": min_labelled,
        "max_p95_latency_ms": max_p95_latency_ms, "max_drift_psi": max_drift_psi}
    gates.update({k: v for k, v in gate_flags.items() if v is not None})
    if gates:
        spec["gates"] = gates
    if probation_s is not None:  # issue 4: over the spec file's [probation] table, if any
        spec["probation"] = {**(spec.get("probation") or {}), "duration_s": probation_s}
    view = client.create_rollout(spec, dry_run=dry_run)
    if dry_run:
        if as_json:
            _emit(view, True)
            return
        click.echo("\n".join(render_rollout(view)))
        for w in view["waves"]:
            ids = w.get("device_ids", [])
            more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
            click.echo(f"  wave {w['wave']}: {', '.join(ids[:10])}{more}")
        click.echo("dry run: nothing was stored or sent" + (
            f"; would take devices from rollouts {view['preempts']}" if view.get("preempts")
            else ""))
        return
    if not wait:
        if as_json:
            _emit(view, True)
        else:
            click.echo(f"rollout #{view['id']} started: {view['model']}:{view['version']} to "
                       f"{view['targets']} devices in {view['wave_count']} waves; "
                       f"follow it with `edgewise rollout status {view['id']} --wait`")
        return
    if not as_json:
        click.echo(f"rollout #{view['id']} started")
    sys.exit(follow(client, str(view["id"]), parse_duration(timeout), as_json))


@rollout.command("status", epilog=EXIT_CODES_HELP)
@click.argument("ref", metavar="ID")
@click.option("--wait/--no-wait", default=False, help="Follow live progress until it ends.")
@click.option("--timeout", default="0", show_default=True,
              help="Stop waiting after this long (0: no limit).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def rollout_status(ctx: click.Context, ref: str, wait: bool, timeout: str, as_json: bool) -> None:
    """Show a rollout: each wave's progress and the gates of the current wave against their
    thresholds. ID is the number `rollout list` shows (or the rollout's name).

    Example: edgewise rollout status 7 --wait
    """
    client = _client(ctx)
    if wait:
        sys.exit(follow(client, ref, parse_duration(timeout), as_json))
    view = client.rollout(ref)
    _emit(view, as_json, "\n".join(render_rollout(view)))


@rollout.command("list")
@click.option("--all/--live", "include_finished", default=True, show_default=True,
              help="Include finished rollouts, or only live ones.")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def rollout_list(ctx: click.Context, include_finished: bool, limit: int, as_json: bool) -> None:
    """List rollouts, newest first.

    Example: edgewise rollout list --live
    """
    views = _client(ctx).rollouts(include_finished, limit)
    rows = [[v["id"], v["name"], f"{v['model']}:{v['version']}", v["status"],
             f"{v['wave']}/{v['wave_count']}", f"{v['active']}/{v['targets']}",
             v["spec"]["selector"] or "-", time.strftime("%Y-%m-%d %H:%M",
                                                         time.localtime(v["created_at"]))]
            for v in views]
    _emit(views, as_json, _table(["ID", "NAME", "VERSION", "STATUS", "WAVE", "ACTIVE",
                                  "SELECTOR", "CREATED"], rows) if rows else "no rollouts")


def _action(ctx: click.Context, ref: str, action: str, reason: str, as_json: bool) -> None:
    view = _client(ctx).rollout_action(ref, action, reason)
    _emit(view, as_json, "\n".join(render_rollout(view)))


@rollout.command("pause")
@click.argument("ref", metavar="ID")
@click.option("--reason", default="", help="Why, for the audit log.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def rollout_pause(ctx: click.Context, ref: str, reason: str, as_json: bool) -> None:
    """Stop sending further waves; devices already moved keep the version.

    Example: edgewise rollout pause 7 --reason "support calls from berlin"
    """
    _action(ctx, ref, "pause", reason, as_json)


@rollout.command("resume")
@click.argument("ref", metavar="ID")
@click.option("--reason", default="", help="Why, for the audit log.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def rollout_resume(ctx: click.Context, ref: str, reason: str, as_json: bool) -> None:
    """Continue a paused rollout: the current wave's soak and timeouts start over, and its
    gates are judged again (fix the cause first, or it pauses again).

    Example: edgewise rollout resume 7
    """
    _action(ctx, ref, "resume", reason, as_json)


@rollout.command("abort", epilog=EXIT_CODES_HELP)
@click.argument("ref", metavar="ID")
@click.option("--reason", default="", help="Why, for the audit log.")
@click.option("--wait/--no-wait", default=False, help="Follow the reverts until confirmed.")
@click.option("--timeout", default="0", show_default=True,
              help="Stop waiting after this long (0: no limit).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def rollout_abort(ctx: click.Context, ref: str, reason: str, wait: bool, timeout: str,
                  as_json: bool) -> None:
    """Stop a rollout and send every device it moved back to the version it ran before
    (a device that ran no model is told to run none).

    Example: edgewise rollout abort 7 --reason "wrong model" --wait
    """
    client = _client(ctx)
    view = client.rollout_action(ref, "abort", reason)
    if wait:
        sys.exit(follow(client, str(view["id"]), parse_duration(timeout), as_json))
    _emit(view, as_json, "\n".join(render_rollout(view)))


# -- devices -----------------------------------------------------------------------------------

@click.group("devices")
def devices() -> None:
    """The device registry: list devices by selector, show one, set labels, pre-register
    (and, with the security commands, enroll and revoke device credentials).

    Example: edgewise devices list --selector "site=berlin,hw in (pi4,pi5)"
    """


@devices.command("list")
@click.option("--selector", help="Only devices whose labels match, e.g. 'site=berlin,!canary'.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def devices_list(ctx: click.Context, selector: str | None, as_json: bool) -> None:
    """List devices with their effective labels (the operator's labels override the device's).

    Example: edgewise devices list --selector "hw in (pi4,pi5)" --json
    """
    rows = _client(ctx).devices(selector)
    table = [[d["device_id"], "online" if d["online"] else ("never seen" if not d.get("seen", True)
                                                           else "offline"),
              f"{d['active_model']}:{d['active_version']}" if d.get("active_model") else "-",
              d.get("state") or "-", _labels_text(d.get("labels") or {})] for d in rows]
    _emit(rows, as_json, _table(["DEVICE", "ONLINE", "MODEL", "STATE", "LABELS"], table)
          + f"\n{len(rows)} devices" + (f" match {selector!r}" if selector else ""))


@devices.command("show")
@click.argument("device_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def devices_show(ctx: click.Context, device_id: str, as_json: bool) -> None:
    """Show one device: state, versions, labels and where each label comes from.

    Example: edgewise devices show pi-berlin-01
    """
    d = _client(ctx).device(device_id)
    lines = [f"device        {d['device_id']}",
             "online        " + ("online" if d["online"] else "offline")
             + ("" if d.get("seen", True) else " (never connected)"),
             f"state         {d.get('state') or '-'}",
             "active        " + (f"{d['active_model']}:{d['active_version']}"
                                  if d.get("active_model") else "-"),
             "desired       " + (f"{d['desired_model']}:{d['desired_version']}"
                                  if d.get("desired_model") else "-")
             + (f"  ({d['desired_deployment_id']})" if d.get("desired_deployment_id") else ""),
             f"last error    {d.get('last_error') or '-'}",
             f"labels        {_labels_text(d.get('labels') or {})}",
             f"  own         {_labels_text(d.get('device_labels') or {})}",
             f"  operator    {_labels_text(d.get('operator_labels') or {})}",
             f"predictions   {d.get('predictions', 0)}"]
    _emit(d, as_json, "\n".join(lines))


def _parse_label_args(args: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    set_: dict[str, str] = {}
    remove: list[str] = []
    for arg in args:
        if arg.endswith("-") and "=" not in arg:
            remove.append(arg[:-1])
        elif "=" in arg:
            key, _, value = arg.partition("=")
            set_[key.strip()] = value.strip()
        else:
            raise click.BadParameter(f"{arg!r}: write KEY=VALUE to set a label or KEY- to "
                                     "remove one")
    return set_, remove


@devices.command("label")
@click.argument("device_id")
@click.argument("labels", nargs=-1, required=True, metavar="KEY=VALUE... KEY-...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def devices_label(ctx: click.Context, device_id: str, labels: tuple[str, ...],
                  as_json: bool) -> None:
    """Set operator labels (KEY=VALUE, overriding the device's own) or remove them (KEY-).

    Example: edgewise devices label pi-berlin-01 canary=true tier=edge old-
    """
    set_, remove = _parse_label_args(labels)
    d = _client(ctx).set_labels(device_id, set_, remove)
    note = f"\nnot set, nothing removed: {', '.join(d['not_set'])}" if d.get("not_set") else ""
    _emit(d, as_json, f"{d['device_id']}: {_labels_text(d['labels'])}{note}")


@devices.command("register")
@click.argument("device_id")
@click.argument("labels", nargs=-1, metavar="[KEY=VALUE...]")
@click.option("--note", default="", help="Free text kept with the registration.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def devices_register(ctx: click.Context, device_id: str, labels: tuple[str, ...], note: str,
                     as_json: bool) -> None:
    """Pre-register a device before it first connects, with operator labels; on first contact
    it matches selectors with them, and the newest matching rollout sends it its version.

    Example: edgewise devices register pi-oslo-07 site=oslo hw=pi5 --note "rack 3"
    """
    set_, remove = _parse_label_args(labels)
    if remove:
        raise click.BadParameter("a new device has no labels to remove")
    d = _client(ctx).register(device_id, set_, note)
    _emit(d, as_json, f"registered {d['device_id']}: {_labels_text(d['labels'])}")


# -- audit -------------------------------------------------------------------------------------

@click.command("audit")
@click.option("--rollout", "rollout_id", type=int, help="Only this rollout's entries.")
@click.option("--device", help="Only entries naming this device.")
@click.option("--action", help="Only actions starting with this, e.g. rollout.aborted or device.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--before", type=int, help="Page: entries older than this id (the 'next' value).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def audit(ctx: click.Context, rollout_id: int | None, device: str | None, action: str | None,
          limit: int, before: int | None, as_json: bool) -> None:
    """Show the audit log, newest first: every rollout decision and operator action.

    Example: edgewise audit --rollout 7 --limit 20
    """
    page = _client(ctx).audit(rollout=rollout_id, device=device, action=action, limit=limit,
                              before=before)
    rows = []
    for e in page["entries"]:
        devices_text = ",".join(e["devices"][:3]) + (
            f" +{len(e['devices']) - 3}" if len(e["devices"]) > 3 else "")
        detail = e["detail"].get("why") or e["detail"].get("detail") or e["detail"].get("reason") \
            or ""
        rows.append([e["id"], time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"])),
                     e["actor"], e["action"], e["rollout_id"] or "-", devices_text or "-",
                     str(detail)[:80]])
    more = f"\nolder entries: `edgewise audit --before {page['next']}`" if page["next"] else ""
    _emit(page, as_json, (_table(["ID", "TIME", "ACTOR", "ACTION", "ROLLOUT", "DEVICES",
                                  "DETAIL"], rows) if rows else "no entries") + more)


COMMANDS = (rollout, devices, audit)

__all__ = ["COMMANDS", "ControllerClientError", "RolloutClient", "audit", "devices", "follow",
           "render_rollout", "rollout"]
