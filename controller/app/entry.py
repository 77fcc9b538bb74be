"""The ``edgewise`` command's entry point.

A device's install (``[agent]``) gets the ``edgewise`` script too, without click, FastAPI or
SQLAlchemy: there the command says which extra it needs in one line instead of ending in an
ImportError traceback.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from controller.app.cli import main as cli_main
    except ModuleNotFoundError as exc:
        sys.stderr.write(
            f"error: the edgewise command needs the controller's dependencies ({exc.name} is "
            "not installed); on a device run edgewise-agent, on the operator's machine install "
            "the [controller] extra from the wheel or checkout (docs/deploy.md)\n")
        raise SystemExit(1) from None
    cli_main()
