"""Why a database could not be opened, in one line that never shows its password: for the
controller's start-up and any command that opens the database (docs/cli.md)."""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

# where the operator sets the database URL
DB_URL_SETTING = "check --db-url, EDGEWISE_DB_URL or db_url in the config"


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, parseable or not."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable: mask by shape, never echo what may be a secret
        return re.sub(r"(//[^/@:]*:)[^@/]*@", r"\1***@", url)


def failure_reason(exc: BaseException, url: str) -> str:
    """The driver's own first line (a refused connection, an unknown database, a missing
    dialect), with the URL's password masked should the driver quote it."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, DBAPIError):
        cause = cause.__cause__
    source = cause.orig if isinstance(cause, DBAPIError) and cause.orig is not None else exc
    text = str(source).strip().splitlines()
    reason = text[0].strip() if text else type(source).__name__
    password = re.search(r"//[^/@:]*:([^@/]*)@", url)
    return reason.replace(password.group(1), "***") if password and password.group(1) else reason


def cannot_open(exc: BaseException, url: str) -> str:
    """``cannot open the database URL: REASON; check --db-url, ...``."""
    return f"cannot open the database {masked_url(url)}: {failure_reason(exc, url)}; {DB_URL_SETTING}"
