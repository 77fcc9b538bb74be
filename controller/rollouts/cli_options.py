"""The options `edgewise rollout start` and `edgewise agent rollout` share, and their parsing.

Both commands plan waves over the devices a selector picks and steer them with the same gates;
each option is declared here once, with its name and type. The help texts and defaults stay with
each command (a model rollout and an agent rollout count different things as reported or
failed), so the decorators take them as arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from controller.cli.common import fail, json_option, parse_duration

Command = TypeVar("Command", bound=Callable[..., Any])


def _apply(options: list[Callable[[Command], Command]]) -> Callable[[Command], Command]:
    """Decorate with ``options`` in the order they are listed (the order `--help` shows)."""
    def decorate(command: Command) -> Command:
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def wave_options(*, selector_help: str, waves_help: str, soak_help: str,
                 min_reporting_help: str, max_failed_help: str, selector_default: str | None = None,
                 waves_default: str | None = None,
                 soak_default: str | None = None) -> Callable[[Command], Command]:
    """``--selector --waves --soak --min-reporting --max-failed``: which devices, in which
    waves, and what a wave must show before the next."""
    return _apply([
        click.option("--selector", default=selector_default, help=selector_help),
        click.option("--waves", default=waves_default, show_default=waves_default is not None,
                     help=waves_help),
        click.option("--soak", default=soak_default, show_default=soak_default is not None,
                     help=soak_help),
        click.option("--min-reporting", type=str, help=min_reporting_help),
        click.option("--max-failed", type=str, help=max_failed_help),
    ])


def steering_options(*, wave_timeout_help: str, on_gate_failure_help: str, priority_help: str,
                     name_help: str, on_gate_failure_default: str | None = None,
                     priority_default: int | None = None,
                     name_default: str | None = None) -> Callable[[Command], Command]:
    """``--wave-timeout --on-gate-failure --priority --name``: what a stuck or failed wave
    leads to, and how the rollout stands beside the others."""
    return _apply([
        click.option("--wave-timeout", help=wave_timeout_help),
        click.option("--on-gate-failure", type=click.Choice(["pause", "abort"]),
                     default=on_gate_failure_default,
                     show_default=on_gate_failure_default is not None, help=on_gate_failure_help),
        click.option("--priority", type=int, default=priority_default,
                     show_default=priority_default is not None, help=priority_help),
        click.option("--name", default=name_default, help=name_help),
    ])


def launch_options(command: Command) -> Command:
    """``--dry-run --wait/--no-wait --timeout --json``: send or only plan, and follow or not."""
    return _apply([
        click.option("--dry-run", is_flag=True, help="Validate and show the wave plan; send nothing."),
        click.option("--wait/--no-wait", default=False, help="Show live progress until it ends."),
        click.option("--timeout", default="0", show_default=True,
                     help="Stop waiting after this long (0: no limit); the rollout goes on."),
        json_option,
    ])(command)


def durations(text: str) -> float | list[float]:
    """``10m``, or one duration per wave: ``30m,10m,10m``."""
    parts = [parse_duration(p) for p in text.split(",")]
    return parts[0] if len(parts) == 1 else parts


def share(text: str) -> float:
    """``0.9`` or ``90%``."""
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: write a share like 0.9 or 90%") from None


def budget(text: str) -> int | float | str:
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


def increase_text(text: str | None) -> float | str | None:
    """``25%`` stays text (the spec reads it); ``0.25`` becomes a number."""
    if text is None or text.strip().endswith("%"):
        return text
    try:
        return float(text)
    except ValueError:
        fail(f"{text!r} is not an increase: write 0.25 or 25%")


def plan_fields(*, selector: str | None, waves: str | None, soak: str | None,
                wave_timeout: str | None, on_gate_failure: str | None, priority: int | None,
                name: str | None) -> dict[str, Any]:
    """The spec's fields from the wave and steering options; an option left out is absent
    (a spec file's value, or the spec's default, stands)."""
    fields: dict[str, Any] = {
        "selector": selector, "waves": waves,
        "soak_seconds": durations(soak) if soak is not None else None,
        "wave_timeout_seconds": parse_duration(wave_timeout) if wave_timeout else None,
        "on_gate_failure": on_gate_failure, "priority": priority, "name": name}
    return {k: v for k, v in fields.items() if v is not None}


def wave_gates(*, min_reporting: str | None, max_failed: str | None) -> dict[str, Any]:
    """The gates both kinds of rollout have, from ``--min-reporting`` and ``--max-failed``."""
    gates: dict[str, Any] = {
        "min_reporting_share": share(min_reporting) if min_reporting is not None else None,
        "max_failed_activations": budget(max_failed) if max_failed is not None else None}
    return {k: v for k, v in gates.items() if v is not None}
