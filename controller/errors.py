"""Precise errors raised by the controller's library code.

Only the CLI and the HTTP layer turn these into exit codes and status codes; everything below
them raises one of these so the boundary can tell "you asked for something that is not there"
from "the request contradicts stored state" from "the database is down".
"""

from __future__ import annotations


class EdgewiseError(Exception):
    """Base class for every error the controller raises on purpose."""


class NotFoundError(EdgewiseError, LookupError):
    """A named thing (device, model, version, artifact, ...) does not exist."""

    def __init__(self, what: str, ident: object) -> None:
        self.what = what
        self.ident = ident
        super().__init__(f"{what} {ident!r} not found")


class ConflictError(EdgewiseError):
    """The request contradicts what is already stored (duplicate id, changed task, ...)."""


class ValidationError(EdgewiseError, ValueError):
    """The input is malformed or inconsistent with itself (hash mismatch, bad sha, ...)."""


class StorageError(EdgewiseError):
    """The database or the file system failed in a way the caller cannot fix by retrying
    the same request with different input."""
