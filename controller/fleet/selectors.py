"""Label selectors over device labels, in the Kubernetes syntax operators already know.

A selector is comma-separated requirements that must all hold::

    site=berlin, hw in (pi4,pi5), !retired, tier!=prod

``key=value`` (also ``key==value``), ``key!=value``, ``key in (a,b)``, ``key notin (a,b)``,
``key`` (the label exists) and ``!key`` (it does not). As in Kubernetes, ``!=`` and ``notin``
also match devices that lack the key, and the empty selector matches every device.

Parsing is strict and positional so the CLI can point at the mistake; :class:`Selector` is a
frozen value whose ``str()`` is canonical (sorted, de-duplicated), so two spellings of the same
selector compare and store equal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from controller.errors import ValidationError

MAX_LABEL_LENGTH = 63
_LABEL_CHARS = re.compile(r"[A-Za-z0-9_./-]+")
_WORD = re.compile(r"[A-Za-z0-9_./-]*")

# the device label the views group by when nobody says otherwise
DEFAULT_GROUP_LABEL = "site"


class SelectorError(ValidationError):
    """A selector does not parse. ``position`` is the 0-based offset of the problem."""

    def __init__(self, text: str, position: int, expected: str, found: str | None = None) -> None:
        self.text = text
        self.position = position
        self.expected = expected
        self.found = found if found is not None else _token_at(text, position)
        super().__init__(
            f"expected {expected} at position {position}, found {self.found}, in selector {text!r}"
        )


class LabelError(ValidationError):
    """A device label key or value breaks the character or length rule."""


class Op(Enum):
    """Requirement operators; the order here is the canonical order within one key."""

    EXISTS = "exists"
    NOT_EXISTS = "!"
    EQ = "="
    NE = "!="
    IN = "in"
    NOTIN = "notin"


_OP_ORDER = {op: i for i, op in enumerate(Op)}


@dataclass(frozen=True)
class Requirement:
    """One condition on one label key; ``values`` is sorted and only used by =, !=, in, notin."""

    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the labels satisfy this requirement (absent keys satisfy != and notin)."""
        present = self.key in labels
        if self.op is Op.EXISTS:
            return present
        if self.op is Op.NOT_EXISTS:
            return not present
        if self.op in (Op.EQ, Op.IN):
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values

    def __str__(self) -> str:
        if self.op is Op.EXISTS:
            return self.key
        if self.op is Op.NOT_EXISTS:
            return f"!{self.key}"
        if self.op in (Op.EQ, Op.NE):
            return f"{self.key}{self.op.value}{self.values[0]}"
        return f"{self.key} {self.op.value} ({','.join(self.values)})"


@dataclass(frozen=True)
class Selector:
    """Requirements ANDed together; no requirements means "every device"."""

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def of(cls, requirements: Iterable[Requirement]) -> Selector:
        """Build the canonical form: sorted by key then operator, duplicates dropped."""
        unique = set(requirements)
        return cls(tuple(sorted(unique, key=lambda r: (r.key, _OP_ORDER[r.op], r.values))))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a device with these labels is selected."""
        return all(r.matches(labels) for r in self.requirements)

    @property
    def matches_all(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def label_problem(text: str, what: str = "label") -> str | None:
    """Why ``text`` is not a valid label key or value, or None if it is.

    Shared by the selector parser and device registration so a label a device may carry can
    always be written in a selector.
    """
    if not text:
        return f"{what} is empty"
    if len(text) > MAX_LABEL_LENGTH:
        return f"{what} {text[:20]!r}... is {len(text)} characters, more than {MAX_LABEL_LENGTH}"
    if not _LABEL_CHARS.fullmatch(text):
        return f"{what} {text!r} may only contain letters, digits and '-_./'"
    return None


def validate_labels(labels: Mapping[str, str]) -> None:
    """Raise :class:`LabelError` naming the first bad key or value in a device's labels."""
    for key, value in labels.items():
        problem = label_problem(key, "label key") or label_problem(value, f"value of label {key!r}")
        if problem:
            raise LabelError(problem)


def parse_selector(text: str) -> Selector:
    """Parse a selector; raise :class:`SelectorError` with the position and what was expected."""
    return _Parser(text).selector()


def _token_at(text: str, pos: int) -> str:
    if pos >= len(text):
        return "end of input"
    word = _WORD.match(text, pos)
    if word and word.group():
        return repr(word.group())
    return repr(text[pos])


class _Parser:
    """Recursive descent over the text, with one cursor; every error carries the cursor."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def selector(self) -> Selector:
        self._skip_ws()
        if self._at_end():
            return Selector()
        requirements = [self._requirement()]
        while True:
            self._skip_ws()
            if self._at_end():
                return Selector.of(requirements)
            if self.text[self.pos] != ",":
                raise self._error("',' or end of selector")
            self.pos += 1
            requirements.append(self._requirement())

    def _requirement(self) -> Requirement:
        self._skip_ws()
        if self._peek() == "!":
            self.pos += 1
            self._skip_ws()
            return Requirement(self._word("label key after '!'", "label key"), Op.NOT_EXISTS)
        key = self._word("label key or '!'", "label key")
        self._skip_ws()
        if self._at_end() or self._peek() == ",":
            return Requirement(key, Op.EXISTS)
        if self.text.startswith("!=", self.pos):
            self.pos += 2
            return Requirement(key, Op.NE, (self._value(),))
        if self._peek() == "=":
            self.pos += 2 if self.text.startswith("==", self.pos) else 1
            return Requirement(key, Op.EQ, (self._value(),))
        start = self.pos
        word = _WORD.match(self.text, self.pos)
        if word and word.group() in ("in", "notin"):
            self.pos = word.end()
            return Requirement(key, Op(word.group()), self._value_set())
        self.pos = start
        raise self._error("'=', '!=', 'in', 'notin', ',' or end of selector")

    def _value(self) -> str:
        self._skip_ws()
        return self._word("label value", "label value")

    def _value_set(self) -> tuple[str, ...]:
        self._skip_ws()
        if self._peek() != "(":
            raise self._error("'(' to open the value list")
        self.pos += 1
        values = []
        while True:
            values.append(self._value())
            self._skip_ws()
            if self._peek() == ")":
                self.pos += 1
                return tuple(sorted(set(values)))
            if self._peek() != ",":
                raise self._error("',' or ')' in the value list")
            self.pos += 1

    def _word(self, expected: str, what: str) -> str:
        match = _WORD.match(self.text, self.pos)
        word = match.group() if match else ""
        if not word:
            raise self._error(expected)
        if len(word) > MAX_LABEL_LENGTH:
            raise self._error(f"a {what} of at most {MAX_LABEL_LENGTH} characters",
                              f"{len(word)} characters")
        self.pos += len(word)
        return word

    def _skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _peek(self) -> str | None:
        return self.text[self.pos] if self.pos < len(self.text) else None

    def _at_end(self) -> bool:
        return self.pos >= len(self.text)

    def _error(self, expected: str, found: str | None = None) -> SelectorError:
        return SelectorError(self.text, self.pos, expected, found)
