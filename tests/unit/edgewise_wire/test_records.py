"""Records of named fields checked against a model's input schema (edgewise_wire/records.py)."""

from __future__ import annotations

import json
import math

import pytest

from edgewise_wire.errors import SchemaError
from edgewise_wire.records import (
    InputField,
    InputSchema,
    RecordError,
    is_records,
    validate_records,
)

SCHEMA = InputSchema((
    InputField("age", "number", "float32", nullable=True, imputed=39.5),
    InputField("hours", "number", "float32"),
    InputField("colour", "category", "string", ("blue", "green", "red")),
    InputField("note", "text", "string"),
))


def _row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {"age": 41, "hours": 7.5, "colour": "red", "note": "all good"}
    row.update(changes)
    return row


def test_the_schema_survives_json_round_trip() -> None:
    again = InputSchema.from_dict(json.loads(json.dumps(SCHEMA.to_dict())))
    assert again == SCHEMA
    assert SCHEMA.to_dict()["fields"][2]["categories"] == ["blue", "green", "red"]


@pytest.mark.parametrize("payload", [
    [_row(), _row(colour="blue", age=None)],                               # objects
    {"age": [41, None], "hours": [7.5, 7.5], "colour": ["red", "blue"],
     "note": ["all good", "all good"]},                                   # columns
    [[41, 7.5, "red", "all good"], [None, 7.5, "blue", "all good"]],      # rows in field order
])
def test_every_accepted_form_gives_the_same_columns(payload: object) -> None:
    batch = validate_records(payload, SCHEMA)
    assert batch.n == 2
    assert batch.columns["colour"] == ["red", "blue"]
    assert batch.columns["age"] == [41, None]
    rows = batch.monitor_rows()
    assert rows[0] == [41.0, 7.5, 2.0, 2.0]  # red is category 2; "all good" has two words
    assert rows[1][0] == 39.5 and rows[1][2] == 0.0  # null: what the model's imputer puts in
    unimputed = InputSchema((InputField("x", "number", "float32", nullable=True),))
    assert math.isnan(validate_records([{"x": None}], unimputed).monitor_rows()[0][0])


def test_one_object_is_one_row() -> None:
    assert validate_records(_row(), SCHEMA).n == 1
    assert is_records(_row()) and is_records([_row()])
    assert not is_records([[1.0, 2.0]]) and not is_records([1.0, 2.0])


def test_every_bad_row_is_named_with_its_field_and_reason() -> None:
    payload = [_row(), _row(colour="purple"), {"age": 3, "colour": "red", "note": "x"},
               _row(hours="seven"), _row(hours=None), _row(note=5), _row(extra=1),
               _row(hours=float("inf")), _row(hours=True)]
    with pytest.raises(RecordError) as caught:
        validate_records(payload, SCHEMA)
    errors = caught.value.errors
    assert errors == [
        "row 1: field 'colour' unseen category 'purple' (seen in training: blue, green, red)",
        "row 2: missing field 'hours'",
        "row 3: field 'hours' must be a number, got str 'seven'",
        "row 4: field 'hours' is null, but the model has no imputer for it",
        "row 5: field 'note' must be a string, got int 5",
        "row 6: unknown field 'extra'",
        "row 7: field 'hours' must be a finite number",
        "row 8: field 'hours' must be a number, got bool True",
    ]
    assert str(caught.value).startswith("8 of 9 rows do not match the model's input schema")


def test_malformed_payloads_are_value_errors() -> None:
    with pytest.raises(ValueError, match="no records"):
        validate_records([], SCHEMA)
    with pytest.raises(ValueError, match="differ in length"):
        validate_records({"age": [1, 2], "hours": [1]}, SCHEMA)
    with pytest.raises(RecordError, match="has 2 values, the schema 4 fields"):
        validate_records([[1, 2]], SCHEMA)
    with pytest.raises(ValueError, match="must be an object"):
        validate_records("age=4", SCHEMA)


@pytest.mark.parametrize("field, message", [
    ({"name": "x", "kind": "colour", "dtype": "string"}, "kind"),
    ({"name": "x", "kind": "number", "dtype": "string"}, "dtype"),
    ({"name": "x", "kind": "category", "dtype": "string"}, "categories must list"),
    ({"name": "x", "kind": "category", "dtype": "string", "categories": [1]}, "str values"),
    ({"name": "x", "kind": "number", "dtype": "float32", "nullable": "yes"}, "nullable"),
])
def test_bad_schemas_are_refused(field: dict[str, object], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        InputSchema.from_dict({"fields": [field]})
    with pytest.raises(SchemaError, match="duplicate"):
        InputSchema.from_dict({"fields": [SCHEMA.fields[0].to_dict()] * 2})
