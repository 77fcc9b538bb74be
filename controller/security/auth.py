"""Who may call the controller's REST API: bearer tokens scoped ``read`` or ``admin``.

Tokens come from two places:

- the token file ``{data_dir}/api-tokens.json``, written by ``edgewise tokens create --scope
  read|admin NAME`` on the controller host. It holds each token's sha256, never the token, and
  is read again whenever it changes, so a new or revoked token takes effect without a restart;
- the configuration: ``api_token`` (admin; ``--api-token`` / ``EDGEWISE_API_TOKEN``) and
  ``read_token`` (read).

Authentication is on as soon as one token exists. Then:

- every call that changes state needs an admin token (:meth:`ApiAuth.require_admin`, which
  ``controller.app.api`` hands to routers as ``require_token``): no token 401, a read token 403;
- reads (GET) need a read or admin token unless ``dashboard_public`` is true
  (:meth:`ApiAuth.require_read`). ``GET /api/v1/health`` stays open for load balancers.

Without any token the API is open, which is allowed only on a loopback address:
:func:`check_exposure` refuses to serve other addresses that way unless ``allow_open_api``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import ipaddress
import json
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request

from controller.config import ControllerConfig
from controller.errors import ConflictError, NotFoundError, ValidationError

SCOPES = ("read", "admin")
TOKEN_FILE = "api-tokens.json"
# health for load balancers; enrollment, whose credential is the claim token in the body
# (controller/security/enroll_api.py)
PUBLIC_PATHS = frozenset({"/api/v1/health", "/api/v1/enroll", "/api/v1/enroll/renew"})


@dataclass(frozen=True)
class Principal:
    """The caller a token stands for."""

    name: str
    scope: str

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"


@dataclass(frozen=True)
class TokenInfo:
    name: str
    scope: str
    created_at: str
    prefix: str  # the first characters of the token, to recognise it


def token_hash(token: str) -> str:
    # tokens are 256 random bits: a plain hash is enough, no slow KDF needed
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(scope: str) -> str:
    return f"ew{scope[0]}_{secrets.token_urlsafe(32)}"


class TokenStore:
    """Named tokens in a JSON file; only hashes are stored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: tuple[float, int, dict[str, Principal]] | None = None
        self._cache_lock = threading.Lock()

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> TokenStore:
        return cls(data_dir / TOKEN_FILE)

    def create(self, name: str, scope: str) -> str:
        """A new token for ``name``; the only time its text is seen."""
        if scope not in SCOPES:
            raise ValidationError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").replace(
                ".", "").isalnum():
            raise ValidationError("a token name is 1-64 letters, digits, '-', '_' or '.'")
        token = new_token(scope)
        with self._locked():
            state = self._load()
            if name in state["tokens"]:
                raise ConflictError(f"a token named {name!r} exists: revoke it first "
                                    f"(`edgewise tokens revoke {name}`) or pick another name")
            state["tokens"][name] = {
                "scope": scope, "sha256": token_hash(token), "prefix": token[:8],
                "created_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}
            self._save(state)
        return token

    def revoke(self, name: str) -> None:
        with self._locked():
            state = self._load()
            if name not in state["tokens"]:
                raise NotFoundError("API token", name)
            del state["tokens"][name]
            self._save(state)

    def list(self) -> list[TokenInfo]:
        return [TokenInfo(name, row["scope"], row["created_at"], row.get("prefix", ""))
                for name, row in sorted(self._load()["tokens"].items())]

    def by_hash(self) -> dict[str, Principal]:
        """``{sha256: principal}``, re-read when the file changed."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        with self._cache_lock:
            if self._cache is not None and self._cache[:2] == (st.st_mtime, st.st_size):
                return self._cache[2]
            table = {row["sha256"]: Principal(name, row["scope"])
                     for name, row in self._load()["tokens"].items()
                     if row.get("scope") in SCOPES}
            self._cache = (st.st_mtime, st.st_size, table)
            return table

    def _load(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"tokens": {}}
        except (OSError, ValueError) as exc:
            raise ValidationError(f"cannot read the token file {self.path}: {exc}") from None
        return state

    def _save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=2)
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.parent / f".{self.path.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


class ApiAuth:
    """The policy for one controller: which tokens exist, and whether reads need one."""

    def __init__(self, static: dict[str, Principal], store: TokenStore | None,
                 reads_public: bool) -> None:
        self._static = static
        self._store = store
        self.reads_public = reads_public

    @classmethod
    def from_config(cls, config: ControllerConfig) -> ApiAuth:
        """From the controller's ``api_token``, ``read_token``, ``dashboard_public`` and
        ``data_dir``."""
        static: dict[str, Principal] = {}
        if config.read_token:
            static[token_hash(config.read_token)] = Principal("config:read_token", "read")
        if config.api_token:
            static[token_hash(config.api_token)] = Principal("config:api_token", "admin")
        return cls(static, TokenStore.for_data_dir(Path(config.data_dir)),
                   config.dashboard_public)

    @property
    def enabled(self) -> bool:
        return bool(self._static) or bool(self._store and self._store.by_hash())

    def identify(self, authorization: str | None) -> Principal | None:
        """The principal for an ``Authorization`` header; None when auth is off.

        Raises 401 for a missing, malformed or unknown token (when auth is on).
        """
        if not self.enabled:
            return None
        if authorization is None or not authorization.startswith("Bearer "):
            raise HTTPException(401, "this call needs an API token: send 'Authorization: Bearer "
                                     "TOKEN' (`edgewise login` stores one for the CLI)",
                                headers={"WWW-Authenticate": "Bearer"})
        digest = token_hash(authorization.removeprefix("Bearer ").strip())
        principal = self._static.get(digest)
        if principal is None and self._store is not None:
            principal = self._store.by_hash().get(digest)
        if principal is None:
            raise HTTPException(401, "the API token is not valid (unknown or revoked)",
                                headers={"WWW-Authenticate": "Bearer"})
        return principal

    def require_admin(self, authorization: Annotated[str | None, Header()] = None) -> None:
        """FastAPI dependency for calls that change state."""
        principal = self.identify(authorization)
        if principal is not None and not principal.is_admin:
            raise HTTPException(403, f"token {principal.name!r} is read-only; this call "
                                     "changes state and needs an admin token")

    def require_read(self, request: Request,
                     authorization: Annotated[str | None, Header()] = None) -> None:
        """FastAPI dependency for views: any valid token, unless reads are public."""
        if self.reads_public or request.url.path in PUBLIC_PATHS:
            return
        self.identify(authorization)


def check_exposure(config: ControllerConfig) -> None:
    """Refuse to serve an API without tokens on a non-loopback address (unless told to), and a
    half-configured HTTPS."""
    cert, key = config.http_tls_cert, config.http_tls_key
    if (cert is None) != (key is None):
        raise ValidationError("HTTPS needs both http_tls_cert and http_tls_key "
                              "(`edgewise pki server-cert HOST --out DIR` writes both)")
    if config.allow_open_api or ApiAuth.from_config(config).enabled:
        return
    host = str(config.http_host)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValidationError(
            f"the REST API would listen on {host} with no API token, so anyone on the network "
            "could change the fleet: create one (`edgewise tokens create admin --scope admin "
            "--data-dir DIR`) or set api_token; or set allow_open_api = true to accept the risk")


def auth_router(auth: ApiAuth) -> APIRouter:
    """``GET /api/v1/auth/whoami``: which token this is (used by ``edgewise login``)."""
    router = APIRouter()

    @router.get("/api/v1/auth/whoami")
    def whoami(authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        principal = auth.identify(authorization)
        if principal is None:
            return {"auth": False, "name": None, "scope": "admin"}
        return {"auth": True, "name": principal.name, "scope": principal.scope}

    return router


__all__ = ["SCOPES", "ApiAuth", "Principal", "TokenStore", "auth_router", "check_exposure"]
