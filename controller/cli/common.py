"""What every `edgewise` command shares: the client, one-line errors, tables, JSON output,
progress lines and the one duration grammar (docs/cli.md states the conventions).

A feature's commands (``controller/<feature>/cli.py``) are one REST call or library call plus
rendering; they reach the controller through :func:`client_from`, take ``--json`` through
:func:`json_option` and print through :func:`emit`, so ``--json`` means the same everywhere
(tests/unit/controller/cli/test_conventions.py walks the command tree and checks it). Long work
reports progress on stderr through :class:`Progress`, silenced by :func:`quiet_option`.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from controller.cli.client import ControllerClient
from controller.cli.credentials import resolve_credentials
from controller.cli.exit_codes import ExitCode
from controller.config import DEFAULT_HTTP_PORT

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_HTTP_PORT}"


def client_from(ctx: click.Context, timeout: float = 30.0) -> ControllerClient:
    """The client for the root group's ``--controller`` URL, with the token of ``--token`` /
    ``EDGEWISE_API_TOKEN`` or else the one `edgewise login` saved."""
    obj = ctx.find_root().obj
    token, ca_cert = resolve_credentials(obj["url"], obj["token"])
    return ControllerClient(obj["url"], token, timeout=timeout, ca_cert=ca_cert)


def one_line(message: object) -> str:
    """``message`` with its line breaks and runs of blanks folded: an error is one line, so a log
    keeps it whole and ``grep`` finds it."""
    return " ".join(str(message).split())


def fail(message: object, code: int = ExitCode.ERROR) -> NoReturn:
    """One red line on stderr, then exit: how every command reports a refusal."""
    click.echo(click.style("error: ", fg="red", bold=True) + one_line(message), err=True)
    sys.exit(int(code))


def json_option(func: F) -> F:
    """``--json``: print what the command did as JSON on stdout, for scripts (the one way every
    command takes it)."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON for scripts.")(func)


def emit(data: Any, as_json: bool, render: str | Callable[[Any], str] = "") -> None:
    """``data`` as indented JSON with ``--json``, else the rendered text."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(render(data) if callable(render) else render)


# -- progress of long work: stderr, so stdout stays the result --------------------------------

def quiet_option(func: F) -> F:
    """``-q/--quiet`` (env ``EDGEWISE_QUIET``): no progress lines, for CI logs; the result and
    errors still print."""
    return click.option("-q", "--quiet", is_flag=True, envvar="EDGEWISE_QUIET",
                        help="No progress lines on stderr (env EDGEWISE_QUIET=1); the result "
                             "and errors still print.")(func)


class Progress:
    """Progress lines of long work on stderr, each with the seconds since the work began;
    nothing with ``--quiet``. Stdout stays what the command produced (JSON with ``--json``)."""

    def __init__(self, quiet: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet = quiet
        self._clock = clock
        self._start = clock()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            click.echo(f"[{self._clock() - self._start:5.1f}s] {message}", err=True)


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                 paint: Callable[[int, str], str] | None = None) -> str:
    """Columns padded to their widest cell; ``paint(column, padded_cell)`` may colour a cell
    after padding, so escape codes never shift the columns (the header is then bold)."""
    cells = [list(header)] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, r in enumerate(cells):
        padded = [c.ljust(w) for c, w in zip(r, widths, strict=True)]
        if paint is not None and n > 0:
            padded = [paint(i, c) for i, c in enumerate(padded)]
        elif n == 0 and paint is not None:
            padded = [click.style(c, bold=True) for c in padded]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


# -- durations: one grammar for every option that takes a span of time ---------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DURATION_HELP = "a span like 90, 90s, 500ms, 1.5m, 2h or 2d"


def parse_duration(text: str, param_hint: str | None = None) -> float:
    """``90``, ``90s``, ``500ms``, ``1.5m``, ``2h``, ``2d`` -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration; write {DURATION_HELP}",
                                 param_hint=param_hint)
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_since(text: str | None, param_hint: str = "--since",
                now: float | None = None) -> float | None:
    """A span back from now (``30m``, ``6h``, ``2d``; the grammar of :func:`parse_duration`,
    which needs a unit here) or a Unix time."""
    if text is None:
        return None
    match = _DURATION.match(text)
    if match and match.group(2) is not None:
        return (time.time() if now is None else now) - parse_duration(text)
    try:
        return float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a span like 30m, 6h, 2d nor a Unix "
                                 "time", param_hint=param_hint) from None


# -- commands that run on the controller host, on its data directory ----------------------------

def data_dir_option(func: F) -> F:
    """``--data-dir`` and ``--config``: the controller's data directory, for commands that
    work on its files (keys, the CA, tokens) instead of calling its REST API."""
    func = click.option("--config", "config_path", type=click.Path(path_type=Path, exists=True),
                        help="Controller TOML config: use its data_dir.")(func)
    return click.option("--data-dir", type=click.Path(path_type=Path), envvar="EDGEWISE_DATA_DIR",
                        help="The controller's data directory (env EDGEWISE_DATA_DIR; default "
                             "./edgewise-data).")(func)


def resolve_database_url(data_dir: Path | None, config_path: Path | None) -> str:
    """The controller database a host command writes to: the config's ``db_url`` (or
    EDGEWISE_DB_URL), else the SQLite file in the data directory, as `controller serve` opens."""
    from controller.config import load_controller_config

    return load_controller_config(config_path, data_dir=data_dir).database_url


def resolve_data_dir(data_dir: Path | None, config_path: Path | None) -> Path:
    if data_dir is not None:
        return data_dir
    from controller.config import ControllerConfig, load_controller_config

    if config_path is not None:
        return load_controller_config(config_path).data_dir
    return ControllerConfig().data_dir
