"""The one rule for model names, checked wherever a name enters the registry: the REST upload
(``controller/models/api.py``, before the manifest is parsed), ``ModelRegistry.register`` (every
path, the CLI's and the retraining hook's included) and ``edgewise models push`` (before it
converts anything).

A name is 1-64 characters of lower-case letters, digits, ``.``, ``_`` and ``-``, starting with a
letter or a digit. It travels in URLs, file names, Prometheus labels and log lines, so nothing
in it needs quoting: no ``/``, no spaces, no upper case that two operators could spell two ways.
"""

from __future__ import annotations

import re

from controller.errors import ValidationError

MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MODEL_NAME_RULE = ("1-64 characters of lower-case letters, digits, '.', '_' or '-', starting "
                   "with a letter or a digit")


def check_model_name(name: object) -> str:
    """``name`` if it follows the rule; otherwise a one-line ValidationError with the rule."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        shown = name[:80] + "..." if isinstance(name, str) and len(name) > 80 else name
        raise ValidationError(f"invalid model name {shown!r}: use {MODEL_NAME_RULE}")
    return name


def default_model_name(stem: str) -> str:
    """The name ``models push`` gives a file without ``--name``: its stem in lower case."""
    return stem.lower()
