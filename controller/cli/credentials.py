"""The API tokens `edgewise login` saves, per controller URL, and how a command picks its token.

Kept in ``$XDG_CONFIG_HOME/edgewise/credentials.json`` (default ``~/.config``), mode 0600.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edgewise" / "credentials.json"


def load_credentials() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(credentials_path().read_text())
        return data
    except (OSError, ValueError):
        return {}


def save_credentials(data: dict[str, Any]) -> None:
    """Replace the file atomically; the directory 0700 and the file 0600 from the start."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def resolve_credentials(url: str, token: str | None) -> tuple[str | None, str | None]:
    """(token, CA file) for ``url``: ``--token``/``EDGEWISE_API_TOKEN`` first, else what
    ``edgewise login`` saved; the CA from ``EDGEWISE_CA_CERT`` or the login."""
    saved = load_credentials().get(url.rstrip("/"), {})
    ca = os.environ.get("EDGEWISE_CA_CERT") or saved.get("ca_cert")
    return token or saved.get("token"), ca
