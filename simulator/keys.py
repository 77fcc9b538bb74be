"""The controller's manifest-signing public keys, for simulated agents to trust.

A real device gets them in its enrollment bundle (``trusted_keys/KEY_ID.pem``); a simulated
fleet reads them from the controller's data directory, so the agents run in enforce mode and
act only on desired states the controller signed.
"""

from __future__ import annotations

from pathlib import Path

from controller.security.signing_keys import SigningKeys


class KeysError(ValueError):
    """No trusted keys where they were looked for; the message says where and what to do."""


def controller_trusted_keys(data_dir: Path) -> tuple[str, ...]:
    """PEM texts of every key a controller with ``data_dir`` wants trusted, the active first."""
    return tuple(k.public_pem.decode() for k in SigningKeys.for_data_dir(data_dir).trusted())


def load_trusted_keys(path: Path) -> tuple[str, ...]:
    """PEM texts from a controller data directory (its ``signing-keys/``), a ``signing-keys``
    directory itself, a directory of ``*.pem`` files (an enrollment bundle's ``trusted_keys/``)
    or one PEM file."""
    if path.is_file():
        text = path.read_text()
        if "-----BEGIN PUBLIC KEY-----" not in text:
            raise KeysError(f"{path} holds no PEM public key")
        return (text,)
    if not path.is_dir():
        raise KeysError(f"{path} does not exist: give a controller data directory or a PEM file")
    for keys_dir in (path / "signing-keys", path):
        if (keys_dir / "keys.json").exists():
            found = tuple(k.public_pem.decode() for k in SigningKeys(keys_dir).trusted())
            if found:
                return found
    pems = tuple(p.read_text() for p in sorted(path.glob("*.pem")))
    if pems:
        return pems
    raise KeysError(f"no manifest-signing keys in {path}: start the controller once (it creates "
                    "one) or run `edgewise keys create --data-dir DIR`")
