import pytest

from controller.errors import ValidationError
from controller.fleet.selectors import (
    LabelError,
    SelectorError,
    parse_selector,
    validate_labels,
)

BERLIN_PI4 = {"site": "berlin", "hw": "pi4", "tier": "edge"}
MUNICH_PI5 = {"site": "munich", "hw": "pi5"}
BARE: dict[str, str] = {}


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("", BARE, True),
        ("   ", BERLIN_PI4, True),
        ("site=berlin", BERLIN_PI4, True),
        ("site==berlin", BERLIN_PI4, True),
        ("site=berlin", MUNICH_PI5, False),
        ("site=berlin", BARE, False),
        ("site!=berlin", MUNICH_PI5, True),
        ("site!=berlin", BERLIN_PI4, False),
        ("site!=berlin", BARE, True),  # as in Kubernetes: an absent key is "not berlin"
        ("hw in (pi4,pi5)", MUNICH_PI5, True),
        ("hw in (pi3)", BERLIN_PI4, False),
        ("hw in (pi4)", BARE, False),
        ("hw notin (pi4)", BERLIN_PI4, False),
        ("hw notin (pi4)", MUNICH_PI5, True),
        ("hw notin (pi4)", BARE, True),
        ("tier", BERLIN_PI4, True),
        ("tier", MUNICH_PI5, False),
        ("!tier", MUNICH_PI5, True),
        ("!tier", BERLIN_PI4, False),
        ("site=berlin,hw in (pi4,pi5)", BERLIN_PI4, True),
        ("site=berlin,hw in (pi5)", BERLIN_PI4, False),  # ANDed
        (" site = berlin , hw in ( pi4 , pi5 ) ", BERLIN_PI4, True),
        ("in in (x)", {"in": "x"}, True),  # 'in' is only an operator after a key
        ("a.b/c-d_e=v.1-2_3/4", {"a.b/c-d_e": "v.1-2_3/4"}, True),
    ],
)
def test_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        ("site==berlin", "site=berlin"),
        ("hw in (pi5, pi4, pi5)", "hw in (pi4,pi5)"),
        ("tier!=prod, !retired, site=berlin, hw notin (pi3)",
         "hw notin (pi3),!retired,site=berlin,tier!=prod"),
        ("a,a,a=1", "a,a=1"),  # duplicates dropped, exists sorts before =
        ("! a", "!a"),
    ],
)
def test_canonical_form_and_round_trip(text: str, canonical: str) -> None:
    selector = parse_selector(text)
    assert str(selector) == canonical
    assert parse_selector(str(selector)) == selector


def test_spellings_of_one_selector_are_equal() -> None:
    assert parse_selector("b=2,a in (y,x)") == parse_selector("a in (x,y), b==2")


@pytest.mark.parametrize(
    ("text", "position", "expected", "found"),
    [
        ("site=berlin x", 12, "',' or end of selector", "'x'"),
        ("site=berlin;x", 11, "',' or end of selector", "';'"),
        ("a=b,", 4, "label key or '!'", "end of input"),
        (",a", 0, "label key or '!'", "','"),
        ("=x", 0, "label key or '!'", "'='"),
        ("site=", 5, "label value", "end of input"),
        ("site!=", 6, "label value", "end of input"),
        ("!", 1, "label key after '!'", "end of input"),
        ("a!b", 1, "'=', '!=', 'in', 'notin', ',' or end of selector", "'!'"),
        ("hw inx (a)", 3, "'=', '!=', 'in', 'notin', ',' or end of selector", "'inx'"),
        ("hw in pi4", 6, "'(' to open the value list", "'pi4'"),
        ("hw in ()", 7, "label value", "')'"),
        ("hw in (pi4", 10, "',' or ')' in the value list", "end of input"),
        ("hw in (pi4 pi5)", 11, "',' or ')' in the value list", "'pi5'"),
        ("k=" + "v" * 64, 2, "a label value of at most 63 characters", "64 characters"),
        ("k" * 64, 0, "a label key of at most 63 characters", "64 characters"),
        ("site=ber lin", 9, "',' or end of selector", "'lin'"),
        ("site=bär", 6, "',' or end of selector", "'ä'"),
    ],
)
def test_errors_name_position_and_expectation(text: str, position: int, expected: str,
                                              found: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_selector(text)
    err = info.value
    assert (err.position, err.expected, err.found) == (position, expected, found)
    assert f"at position {position}" in str(err)
    assert isinstance(err, ValidationError)  # the HTTP layer maps it to 400


def test_63_characters_is_allowed() -> None:
    assert parse_selector("k" * 63 + "=" + "v" * 63).matches({"k" * 63: "v" * 63})


def test_validate_labels() -> None:
    validate_labels({"site": "berlin", "hw": "pi4"})
    with pytest.raises(LabelError, match="label key 'bad key'"):
        validate_labels({"bad key": "x"})
    with pytest.raises(LabelError, match="value of label 'site' is empty"):
        validate_labels({"site": ""})
    with pytest.raises(LabelError, match="more than 63"):
        validate_labels({"site": "x" * 64})
