"""`edgewise keys create|activate|rotate|retire|list`: the controller's manifest-signing keys.

Works on the controller's data directory (:mod:`controller.security.signing_keys`), so it runs on
the controller host; a running controller picks a newly activated key up at its next signature,
and publishes every change as a key update devices apply over the air
(:mod:`controller.security.key_publisher`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from controller.cli.common import data_dir_option, emit, json_option, resolve_data_dir


@click.group("keys")
def keys() -> None:
    """The controller's Ed25519 manifest-signing keys (devices trust their public halves)."""


def _keys(data_dir: Path | None, config_path: Path | None) -> Any:
    from controller.security.signing_keys import SigningKeys

    return SigningKeys.for_data_dir(resolve_data_dir(data_dir, config_path))


_SAFE_ROTATION = ("the safe rotation: `edgewise keys create` (trusted, not signing; the running "
                  "controller sends devices a key update signed by the keys they trust), wait "
                  "until the devices trust it (the agent's local /v1/health lists trusted_keys), "
                  "`edgewise keys activate NEW_ID`, later `edgewise keys retire OLD_ID`")


def _key_json(key: Any) -> dict[str, Any]:
    return {"key_id": key.key_id, "active": key.active, "created_at": key.created_at,
            "retired_at": key.retired_at}


@keys.command("create")
@json_option
@data_dir_option
def keys_create(as_json: bool, data_dir: Path | None, config_path: Path | None) -> None:
    """Create a signing key: the active one if there is none yet, else trusted but not signing
    (new enrollment bundles carry it, and the running controller sends devices a key update
    adding it, signed by the keys they trust) until `edgewise keys activate`.

    Example: edgewise keys create --data-dir /var/lib/edgewise
    """
    key = _keys(data_dir, config_path).create()
    if as_json:
        emit(_key_json(key), as_json)
        return
    if key.active:
        click.echo(f"created signing key {key.key_id} (active)")
        return
    click.echo(f"created signing key {key.key_id}: trusted, not signing yet. The running "
               "controller sends it to the devices over the air within a second (offline "
               "devices get it when they reconnect); then `edgewise keys activate "
               f"{key.key_id}`")


@keys.command("activate")
@click.argument("key_id")
@json_option
@data_dir_option
def keys_activate(key_id: str, as_json: bool, data_dir: Path | None,
                  config_path: Path | None) -> None:
    """Make an existing, not retired key the one that signs (from the next publish, no restart);
    the previous one stays trusted until `edgewise keys retire`.

    Devices that do not trust KEY_ID yet refuse what it signs (and take it again once the key
    update reaches them): create it first and let the key update reach the devices.

    Example: edgewise keys activate 3f2a9c0d11e4b5a6 --data-dir /var/lib/edgewise
    """
    new, old = _keys(data_dir, config_path).activate(key_id)
    if as_json:
        emit({"active": _key_json(new), "previous": _key_json(old) if old else None}, as_json)
        return
    if old is None or old.key_id == new.key_id:
        click.echo(f"signing key is {new.key_id}" + (" (it already was)" if old else ""))
        return
    click.echo(f"signing key is now {new.key_id}; {old.key_id} stays trusted until "
               f"`edgewise keys retire {old.key_id}`")


@keys.command("rotate")
@json_option
@data_dir_option
def keys_rotate(as_json: bool, data_dir: Path | None, config_path: Path | None) -> None:
    """Create a new key and make it sign at once; the old one stays trusted until `keys retire`.

    Devices must already trust the new key to take what it signs. They learn it from the key
    update the running controller publishes at once;
    an online device applies it before the next desired state, but one that is offline gets
    both when it reconnects, and until the key update reaches a device it refuses what the
    new key signs and keeps serving its model. The gentler path: `keys create`, wait until
    the devices trust it, `keys activate NEW_ID`, later `keys retire OLD_ID`.

    Example: edgewise keys rotate --data-dir /var/lib/edgewise
    """
    new, old = _keys(data_dir, config_path).rotate()
    emit({"active": _key_json(new), "previous": _key_json(old) if old else None}, as_json,
         f"signing key is now {new.key_id}"
         + (f"; {old.key_id} stays trusted until `edgewise keys retire {old.key_id}`"
            if old else ""))
    if old is not None:
        click.echo(click.style("warning: ", fg="yellow", bold=True)
                   + f"devices that do not trust {new.key_id} yet refuse every new desired state "
                   "until the key update reaches them; " + _SAFE_ROTATION, err=True)


@keys.command("retire")
@click.argument("key_id")
@json_option
@data_dir_option
def keys_retire(key_id: str, as_json: bool, data_dir: Path | None,
                config_path: Path | None) -> None:
    """Stop trusting a key: new bundles leave it out, and the running controller sends devices a
    key update retiring it (signed by the remaining keys and by this one, so a device that
    missed earlier updates still follows).

    Example: edgewise keys retire 3f2a9c0d11e4b5a6 --data-dir /var/lib/edgewise
    """
    key = _keys(data_dir, config_path).retire(key_id)
    emit(_key_json(key), as_json, f"signing key {key_id} retired")


@keys.command("list")
@json_option
@data_dir_option
def keys_list(as_json: bool, data_dir: Path | None, config_path: Path | None) -> None:
    """List signing keys: id, created, retired, which one signs.

    Example: edgewise keys list --json
    """
    rows = [_key_json(k) for k in _keys(data_dir, config_path).all()]
    if as_json:
        emit(rows, as_json)
        return
    if not rows:
        click.echo("no signing keys: `edgewise keys create`")
    for r in rows:
        state = "active" if r["active"] else ("retired" if r["retired_at"] else "trusted")
        click.echo(f"{r['key_id']}  {state:8} created {r['created_at']}")



COMMANDS = (keys,)
