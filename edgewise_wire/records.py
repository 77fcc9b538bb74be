"""Rows of named, typed fields: the input schema of a tabular model and the checks on records.

A model converted from a mixed-type tabular pipeline (numbers, categories, free text) takes one
named ONNX input per column rather than one float matrix. The converter writes the schema into
the manifest (``input_schema``); the agent checks every record against it before anything
reaches the runtime, so a missing field, a wrong type or a category never seen in training is a
precise error naming the row and the field, never an onnxruntime crash or a silently wrong
prediction. Pure standard library: the agent and the controller both use it.

Schema (``manifest.input_schema``)::

    {"fields": [{"name": "age", "kind": "number", "dtype": "float32", "nullable": true},
                {"name": "colour", "kind": "category", "dtype": "string",
                 "categories": ["blue", "green", "red"]},
                {"name": "note", "kind": "text", "dtype": "string"}]}

``kind`` is ``number`` (a finite int or float; ``null`` only where ``nullable``, i.e. the
pipeline imputes that column, and ``imputed`` is the value its imputer puts in), ``category`` (one of ``categories``, the values seen in
training) or ``text`` (any string). ``dtype`` is the artifact input's element type.

Records arrive as one object (``{"age": 41, ...}``), a list of objects, columns
(``{"age": [41, 37], ...}``: every value a list of the same length) or rows in field order
(``[[41, "red", "..."], ...]``, the form the manifest's smoke tests use). Policy: a call with
any bad row is refused as a whole (no row of it is predicted), and the error lists every bad
row (up to :data:`MAX_REPORTED`) as ``row N: field 'x': reason``.

The monitoring view of a record (:meth:`RecordBatch.monitor_rows`) is numeric, one value per
field: a number as is, a category as its index in ``categories``, a null number as its ``imputed`` value, which
is what the model sees (the reference profile bins
categories with edges at 0.5, 1.5, ... so each category is a bin of its own), a text as its
number of words. Drift on categories is thereby measured exactly like drift on numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgewise_wire.errors import SchemaError
from edgewise_wire.validation import get_list, get_str

FIELD_KINDS = ("number", "category", "text")
FIELD_DTYPES = {"number": ("float32", "float64", "int64"), "category": ("string", "int64"),
                "text": ("string",)}
MAX_FIELDS = 1024
MAX_CATEGORIES = 10_000
MAX_REPORTED = 20  # row errors listed in one message

Value = int | float | str | None


class RecordError(ValueError):
    """Records that do not match the input schema; ``errors`` holds one line per bad row."""

    def __init__(self, errors: Sequence[str], rows: int) -> None:
        self.errors = list(errors)
        shown = "; ".join(self.errors[:MAX_REPORTED])
        more = f" (and {len(self.errors) - MAX_REPORTED} more)" \
            if len(self.errors) > MAX_REPORTED else ""
        super().__init__(f"{len(self.errors)} of {rows} rows do not match the model's input "
                         f"schema: {shown}{more}")


@dataclass(frozen=True)
class InputField:
    name: str
    kind: str  # "number" | "category" | "text"
    dtype: str  # element type of the artifact's input of this name
    categories: tuple[int | str, ...] | None = None  # kind "category": values seen in training
    nullable: bool = False  # kind "number": null is imputed by the model
    imputed: float | None = None  # nullable numbers: the value the model puts in for null

    @classmethod
    def from_dict(cls, d: Any, ctx: str) -> InputField:
        if not isinstance(d, dict):
            raise SchemaError(f"{ctx} must be an object")
        name = get_str(d, "name", ctx, max_len=256)
        kind = get_str(d, "kind", ctx)
        if kind not in FIELD_KINDS:
            raise SchemaError(f"{ctx}.kind {kind!r} is not one of {FIELD_KINDS}")
        dtype = get_str(d, "dtype", ctx)
        if dtype not in FIELD_DTYPES[kind]:
            raise SchemaError(f"{ctx}.dtype {dtype!r} is not one of {FIELD_DTYPES[kind]} "
                              f"for a {kind} field")
        raw = get_list(d, "categories", ctx, optional=True, max_items=MAX_CATEGORIES)
        if kind == "category":
            if not raw:
                raise SchemaError(f"{ctx}.categories must list the values seen in training")
            wanted = str if dtype == "string" else int
            if not all(isinstance(c, wanted) and not isinstance(c, bool) for c in raw):
                raise SchemaError(f"{ctx}.categories must hold {wanted.__name__} values")
        nullable = d.get("nullable", False)
        if not isinstance(nullable, bool):
            raise SchemaError(f"{ctx}.nullable must be true or false")
        imputed = d.get("imputed")
        if imputed is not None and (isinstance(imputed, bool) or not isinstance(
                imputed, (int, float)) or not math.isfinite(imputed)):
            raise SchemaError(f"{ctx}.imputed must be a finite number")
        return cls(name, kind, dtype, tuple(raw) if kind == "category" and raw else None,
                   nullable, None if imputed is None else float(imputed))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "dtype": self.dtype}
        if self.categories is not None:
            d["categories"] = list(self.categories)
        if self.nullable:
            d["nullable"] = True
        if self.imputed is not None:
            d["imputed"] = self.imputed
        return d

    def check(self, value: Any) -> str | None:
        """Why ``value`` does not fit this field, or None when it does."""
        if self.kind == "number":
            if value is None:
                return None if self.nullable else "is null, but the model has no imputer for it"
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"must be a number, got {_describe(value)}"
            if not math.isfinite(value):
                return "must be a finite number"
            return None
        if self.kind == "text":
            return None if isinstance(value, str) else f"must be a string, got {_describe(value)}"
        wanted = str if self.dtype == "string" else int
        if isinstance(value, bool) or not isinstance(value, wanted):
            return f"must be a category ({wanted.__name__}), got {_describe(value)}"
        if value not in self._index:
            known = ", ".join(map(str, (self.categories or ())[:10]))
            more = ", ..." if len(self.categories or ()) > 10 else ""
            return f"unseen category {value!r} (seen in training: {known}{more})"
        return None

    @property
    def _index(self) -> dict[Any, int]:
        cached = self.__dict__.get("_index_cache")
        if cached is None:
            cached = {c: i for i, c in enumerate(self.categories or ())}
            object.__setattr__(self, "_index_cache", cached)
        return cached

    def monitor_value(self, value: Any) -> float:
        """The numeric view of a valid value (see the module docstring)."""
        if self.kind == "category":
            return float(self._index[value])
        if self.kind == "text":
            return float(len(str(value).split()))
        if value is None:
            return math.nan if self.imputed is None else self.imputed
        return float(value)


@dataclass(frozen=True)
class InputSchema:
    fields: tuple[InputField, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @classmethod
    def from_dict(cls, d: Any, ctx: str = "input_schema") -> InputSchema:
        if not isinstance(d, dict):
            raise SchemaError(f"{ctx} must be an object")
        raw = get_list(d, "fields", ctx, max_items=MAX_FIELDS)
        fields = tuple(InputField.from_dict(f, f"{ctx}.fields[{i}]") for i, f in enumerate(raw))
        if not fields:
            raise SchemaError(f"{ctx}.fields must name at least one field")
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise SchemaError(f"{ctx}.fields has duplicate names")
        return cls(fields)

    def to_dict(self) -> dict[str, Any]:
        return {"fields": [f.to_dict() for f in self.fields]}


@dataclass(frozen=True)
class RecordBatch:
    """Validated records, as columns in schema order."""

    schema: InputSchema
    columns: dict[str, list[Value]]
    n: int

    def monitor_rows(self) -> list[list[float]]:
        views = [[f.monitor_value(v) for v in self.columns[f.name]] for f in self.schema.fields]
        return [list(row) for row in zip(*views, strict=True)]

    def rows(self) -> list[list[Value]]:
        """Rows in field order (the smoke-test form)."""
        return [list(r) for r in zip(*(self.columns[n] for n in self.schema.names), strict=True)]


def is_records(payload: Any) -> bool:
    """Whether ``payload`` is written as named fields (objects or columns), not as a matrix."""
    if isinstance(payload, Mapping):
        return True
    return isinstance(payload, list) and bool(payload) and isinstance(payload[0], Mapping)


def validate_records(payload: Any, schema: InputSchema) -> RecordBatch:
    """Check ``payload`` (see the module docstring for its forms) against ``schema``.

    Raises RecordError listing every bad row, or ValueError when the payload has none of the
    accepted forms.
    """
    rows = _as_rows(payload, schema)
    if not rows:
        raise ValueError("the request holds no records")
    columns: dict[str, list[Value]] = {f.name: [] for f in schema.fields}
    known = set(schema.names)
    errors: list[str] = []
    for i, row in enumerate(rows):
        problems = [f"row {i}: unknown field {key!r}" for key in row if key not in known]
        for field in schema.fields:
            if field.name not in row:
                problems.append(f"row {i}: missing field {field.name!r}")
                continue
            value = row[field.name]
            reason = field.check(value)
            if reason is not None:
                problems.append(f"row {i}: field {field.name!r} {reason}")
            else:
                columns[field.name].append(value)
        errors.extend(problems)
    if errors:
        raise RecordError(errors, len(rows))
    return RecordBatch(schema, columns, len(rows))


def _as_rows(payload: Any, schema: InputSchema) -> list[Mapping[str, Any]]:
    if isinstance(payload, Mapping):
        values = list(payload.values())
        if values and all(isinstance(v, list) for v in values):  # columns
            lengths = {len(v) for v in values}
            if len(lengths) != 1:
                raise ValueError(f"columns differ in length: "
                                 f"{ {k: len(v) for k, v in payload.items()} }")
            n = lengths.pop()
            return [{k: v[i] for k, v in payload.items()} for i in range(n)]
        return [payload]
    if not isinstance(payload, list):
        raise ValueError("records must be an object, a list of objects, columns (an object of "
                         "equal-length lists) or rows of values in field order")
    if payload and not isinstance(payload[0], (Mapping, list)):
        payload = [payload]  # one row in field order
    rows: list[Mapping[str, Any]] = []
    for i, item in enumerate(payload):
        if isinstance(item, Mapping):
            rows.append(item)
        elif isinstance(item, list):
            if len(item) != len(schema.fields):
                raise RecordError([f"row {i}: has {len(item)} values, the schema "
                                   f"{len(schema.fields)} fields ({', '.join(schema.names)})"],
                                  len(payload))
            rows.append(dict(zip(schema.names, item, strict=True)))
        else:
            raise RecordError([f"row {i}: must be an object of named fields, got "
                               f"{_describe(item)}"], len(payload))
    return rows


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}"
