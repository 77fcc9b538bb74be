"""`edgewise claims create|list|revoke`: claim tokens for zero-touch enrollment
(:mod:`controller.security.claims`). Work on the controller's data directory, like `keys` and
`tokens`: minting the right to enroll devices needs a shell on the controller host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from controller.cli.common import data_dir_option, emit, json_option, resolve_data_dir

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    number, unit = text[:-1], text[-1:]
    if unit not in _UNITS or not number.isdigit() or int(number) < 1:
        raise click.BadParameter(f"{text!r}: use a whole number with s, m, h or d (e.g. 30d)")
    return float(int(number) * _UNITS[unit])


def _store(data_dir: Path | None, config_path: Path | None) -> Any:
    from controller.security.claims import ClaimStore

    return ClaimStore.for_data_dir(resolve_data_dir(data_dir, config_path))


@click.group("claims")
def claims() -> None:
    """Claim tokens: devices with one enroll themselves (zero-touch) within its policy."""


@claims.command("create")
@click.argument("name")
@click.option("--group", required=True, help="Fleet group; becomes the label group=GROUP.")
@click.option("--quota", type=click.IntRange(1, 1_000_000), required=True,
              help="How many devices this token may enroll.")
@click.option("--expires", "expires", default="30d", show_default=True,
              help="Lifetime: a number with s, m, h or d.")
@click.option("--label", "label_values", multiple=True, help="KEY=VALUE given to every device "
                                                             "(repeatable).")
@click.option("--device-class", default="generic", show_default=True)
@click.option("--approval", type=click.Choice(["auto", "manual"]), default="auto",
              show_default=True, help="auto: issue at once; manual: wait for `edgewise devices "
                                      "approve`.")
@json_option
@data_dir_option
def claims_create(name: str, group: str, quota: int, expires: str,
                  label_values: tuple[str, ...], device_class: str, approval: str,
                  as_json: bool, data_dir: Path | None, config_path: Path | None) -> None:
    """Create a claim token (printed once; the controller keeps its hash). Bake it into the
    device image; `edgewise-agent enroll --claim TOKEN` on first boot.

    Example: edgewise claims create berlin-2026 --group berlin --quota 50 --expires 30d
    """
    labels = {}
    for item in label_values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"label {item!r} must look like KEY=VALUE")
        labels[key] = value
    token = _store(data_dir, config_path).create_token(
        name, group=group, quota=quota, expires_in_s=_duration(expires), labels=labels,
        device_class=device_class, approval=approval)
    emit({"name": name, "token": token, "group": group, "quota": quota, "approval": approval},
         as_json, f"claim token {name} ({group}, {quota} devices, {approval}): {token}")


@claims.command("list")
@json_option
@data_dir_option
def claims_list(as_json: bool, data_dir: Path | None, config_path: Path | None) -> None:
    """List claim tokens: group, quota and devices enrolled, approval, expiry.

    Example: edgewise claims list --json
    """
    rows = _store(data_dir, config_path).tokens()
    emit(rows, as_json, "\n".join(
        f"{r['name']}  group={r['group']}  {r['used']}/{r['quota']}  {r['approval']}"
        + ("  revoked" if r["revoked"] else "") for r in rows) or "no claim tokens")


@claims.command("revoke")
@click.argument("name")
@json_option
@data_dir_option
def claims_revoke(name: str, as_json: bool, data_dir: Path | None,
                  config_path: Path | None) -> None:
    """Refuse every further enrollment with this token (enrolled devices stay enrolled).

    Example: edgewise claims revoke berlin-2026
    """
    _store(data_dir, config_path).revoke_token(name)
    emit({"name": name, "revoked": True}, as_json, f"claim token {name} revoked")


COMMANDS = (claims,)
