"""Signing-key rotation without a time in which devices refuse updates: `keys create` adds a
trusted key that does not sign, `keys activate` makes it sign (the controller's
``ActiveSigningKey`` picks it up at the next publish), `keys retire` drops the old one.
Real Ed25519 keys in a temporary data directory, checked with the device's own verification
code (``edgewise_wire.envelope``); no broker."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from controller.app.cli import cli
from controller.errors import ConflictError, NotFoundError
from controller.security.desired_signer import ActiveSigningKey, DesiredSigner, ensure_signing_key
from controller.security.enrollment import enroll_device
from controller.security.signing_keys import SigningKeys
from edge_agent.config import load_config
from edgewise_wire import Desired
from edgewise_wire.envelope import UnknownSigningKey, trusted_keys_from, verify_envelope
from tests.integration.controller.store.conftest import build_manifest

NOW = 1_800_000_000.0


def signed(signer: DesiredSigner, version: int) -> Desired:
    manifest = dataclasses.replace(build_manifest(bytes([version]) * 500), version=version)
    return signer.desired(f"dep-{version}", manifest, "dev-1", None, now=NOW)


def verifies(desired: Desired, trusted: dict[str, bytes]) -> bool:
    """What an enforcing agent checks first: the envelope, signed by a key it trusts."""
    assert desired.envelope is not None
    try:
        verify_envelope(desired.envelope, trusted, now=NOW, device_class="generic",
                        running_version=None)
    except UnknownSigningKey:
        return False
    return True


def test_create_then_activate_never_signs_with_a_key_devices_lack(tmp_path: Path) -> None:
    keys = SigningKeys.for_data_dir(tmp_path)
    source = ensure_signing_key(keys)
    signer = DesiredSigner(source, ttl_s=3600)
    old = keys.active()
    assert old is not None
    device = trusted_keys_from([old.public_pem])  # a device enrolled before the rotation

    new = keys.create()  # a second key: trusted, not signing
    assert not new.active and keys.active() == old
    assert [k.key_id for k in keys.trusted()] == [old.key_id, new.key_id]
    first = signed(signer, 1)
    assert first.envelope is not None
    assert first.envelope["signature"]["key_id"] == old.key_id and verifies(first, device)

    # new enrollment bundles carry both keys, the active one first
    bundle = enroll_device(tmp_path, "pi-new", tmp_path / "out",
                           broker_host="mqtt.example.net")
    config = load_config(bundle.directory / "agent.toml")
    assert [Path(p).stem for p in config.trusted_keys] == [old.key_id, new.key_id]

    device = trusted_keys_from(k.public_pem for k in keys.trusted())  # distributed
    active, previous = keys.activate(new.key_id)
    assert active.key_id == new.key_id and active.active
    assert previous is not None and previous.key_id == old.key_id and not previous.active
    assert keys.active() == active
    second = signed(signer, 2)  # the running controller's key source re-reads keys.json
    assert second.envelope is not None
    assert second.envelope["signature"]["key_id"] == new.key_id and verifies(second, device)
    assert source.key_id == new.key_id
    assert not verifies(second, trusted_keys_from([old.public_pem]))  # why distribute first

    keys.retire(old.key_id)
    assert [k.key_id for k in keys.trusted()] == [new.key_id]


def test_activate_refuses_an_unknown_or_retired_key(tmp_path: Path) -> None:
    keys = SigningKeys.for_data_dir(tmp_path)
    first, _ = keys.ensure()
    second = keys.create()
    with pytest.raises(NotFoundError, match="nope"):
        keys.activate("nope")
    keys.retire(second.key_id)
    with pytest.raises(ConflictError, match="retired"):
        keys.activate(second.key_id)
    assert keys.active() == first  # nothing changed
    with pytest.raises(ConflictError, match="keys activate"):
        keys.retire(first.key_id)  # the active key: the message points at activate


def test_activating_the_active_key_changes_nothing(tmp_path: Path) -> None:
    keys = SigningKeys.for_data_dir(tmp_path)
    first, _ = keys.ensure()
    before = os.stat(keys.dir / "keys.json")
    source = ActiveSigningKey(keys)
    pem = source()
    active, previous = keys.activate(first.key_id)
    assert active.key_id == first.key_id and previous is not None
    assert previous.key_id == first.key_id
    after = os.stat(keys.dir / "keys.json")
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert source() == pem


def test_activate_with_no_active_key_makes_it_the_first(tmp_path: Path) -> None:
    """A keys.json whose active key was lost (edited by hand): activate sets one again."""
    keys = SigningKeys.for_data_dir(tmp_path)
    key = keys.create()
    state = (keys.dir / "keys.json").read_text().replace(f'"active": "{key.key_id}"',
                                                         '"active": null')
    (keys.dir / "keys.json").write_text(state)
    assert keys.active() is None
    active, previous = keys.activate(key.key_id)
    assert active.active and previous is None


def test_the_keys_commands_guide_through_the_safe_rotation(tmp_path: Path) -> None:
    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, ["keys", *args, "--data-dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
        return result.output

    assert "(active)" in run("create")
    old = SigningKeys.for_data_dir(tmp_path).active()
    assert old is not None
    out = run("create")
    new = next(k for k in SigningKeys.for_data_dir(tmp_path).all() if not k.active)
    assert f"created signing key {new.key_id}: trusted, not signing yet" in out
    assert f"edgewise keys activate {new.key_id}" in out
    listed = run("list")
    assert f"{old.key_id}  active" in listed and f"{new.key_id}  trusted" in listed

    out = run("activate", new.key_id)
    assert f"signing key is now {new.key_id}; {old.key_id} stays trusted" in out
    assert "(it already was)" in run("activate", new.key_id)

    refused = CliRunner().invoke(cli, ["keys", "activate", "nope", "--data-dir", str(tmp_path)])
    assert refused.exit_code == 1 and "nope" in refused.output

    # rotate still works, and says what it does to devices that lack the new key
    out = run("rotate")
    assert "warning:" in out and "refuse every new desired state" in out
    assert "edgewise keys create" in out and "edgewise keys activate" in out
    help_text = " ".join(run("rotate", "--help").split())  # as wrapped for the terminal
    assert "must already trust" in help_text and "keys activate" in help_text
